#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (labels unit, mpi, gpu).
# GPU tests are reported as skipped where no CUDA device is visible.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
cd "${LOCKSTEP_BUILD_DIR:-$root/build}"
# Open MPI refuses to run as root unless told; the mpi tests oversubscribe small machines.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j "$(nproc)" "$@"

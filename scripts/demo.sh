#!/usr/bin/env bash
# The main job, from a fresh clone: installs missing packages, builds, then trains the
# embedding + MLP model with the lockstep trainer on 2 MPI ranks (each a full replica, one
# all-reduce per step) on generated CTR data, and prints the held-out AUC next to the oracle AUC,
# and samples/s. Runs on the GPU when one is visible, else on the CPU.
# Extra arguments go to lockstep-train, e.g. scripts/demo.sh --device cpu --epochs 2
# RANKS=1 scripts/demo.sh runs a single process.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build=${LOCKSTEP_BUILD_DIR:-$root/build}
ranks=${RANKS:-2}
# Open MPI refuses to run as root unless told to.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "lockstep demo: $ranks rank(s) train on 1000000 generated samples, evaluate on 50000 held-out ones"
exec mpirun -np "$ranks" --oversubscribe --bind-to none "$build/examples/lockstep-train" \
  --synthetic demo --train-samples 1000000 --test-samples 50000 --epochs 1 --batch-size 1024 "$@"

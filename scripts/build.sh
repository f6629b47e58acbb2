#!/usr/bin/env bash
# Configures and builds lockstep into $LOCKSTEP_BUILD_DIR (default: build/).
#   LOCKSTEP_WITH_CUDA=AUTO|ON|OFF (default AUTO), LOCKSTEP_CUDA_ARCHITECTURES (default 90),
#   LOCKSTEP_SANITIZE (default none; e.g. address,undefined with LOCKSTEP_WITH_CUDA=OFF),
#   LOCKSTEP_CUDA_EMULATION=ON (the CUDA code paths against the host emulator, emu/),
#   LOCKSTEP_EMU_RACECHECK=ON (with it: the kernels checked for data races, docs/cuda_emulation.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOCKSTEP_BUILD_DIR:-$root/build}
# ccache (when installed) keys objects by paths relative to the checkout, so clones elsewhere hit.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
  -DLOCKSTEP_WITH_CUDA="${LOCKSTEP_WITH_CUDA:-AUTO}" \
  -DLOCKSTEP_CUDA_ARCHITECTURES="${LOCKSTEP_CUDA_ARCHITECTURES:-90}" \
  -DLOCKSTEP_SANITIZE="${LOCKSTEP_SANITIZE:-}" \
  -DLOCKSTEP_CUDA_EMULATION="${LOCKSTEP_CUDA_EMULATION:-OFF}" \
  -DLOCKSTEP_EMU_RACECHECK="${LOCKSTEP_EMU_RACECHECK:-OFF}"
cmake --build "$build" -j "$(nproc)"

#!/usr/bin/env bash
# The main job, from a fresh clone: installs missing packages, builds, then trains the
# embedding + MLP model on generated CTR data and prints held-out AUC next to the oracle AUC,
# and samples/s. Runs on the GPU when one is visible, else on the CPU.
# Extra arguments go to lockstep-train, e.g. scripts/demo.sh --device cpu --epochs 2
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build=${LOCKSTEP_BUILD_DIR:-$root/build}
echo "lockstep demo: training on 1000000 generated samples, evaluating on 50000 held-out ones"
exec "$build/examples/lockstep-train" --synthetic demo --train-samples 1000000 \
  --test-samples 50000 --epochs 1 --batch-size 1024 "$@"

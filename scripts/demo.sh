#!/usr/bin/env bash
# The main job, from a fresh clone: installs missing packages, builds, then
#   1. generates CTR data with a known click model (lockstep-datagen),
#   2. trains the dual DNN — a DIN + cross-network teacher and a plain-MLP student over one
#      shared embedding layer, with online distillation — on 2 MPI ranks with the lockstep
#      trainer (each rank a full replica, one all-reduce per step),
#   3. prints the teacher's and the student's held-out AUC next to the oracle AUC, and samples/s,
#   4. exports the student and scores the held-out data with the exported bundle.
# Runs on the GPU when one is visible, else on the CPU. Extra arguments go to lockstep-train.
# RANKS=1 runs a single process; OUT=dir keeps the data and the bundle there (default: a
# temporary directory).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build=${LOCKSTEP_BUILD_DIR:-$root/build}
ranks=${RANKS:-2}
out=${OUT:-$(mktemp -d -t lockstep-demo-XXXXXX)}
# Open MPI refuses to run as root unless told to.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== 1. generating data into $out/data"
"$build/examples/lockstep-datagen" --out "$out/data" --train 300000 --test 50000 --preset demo \
  --shards "$ranks"
echo "== 2-3. training the dual DNN on $ranks rank(s)"
mpirun -np "$ranks" --oversubscribe --bind-to none "$build/examples/lockstep-train" \
  --data "$out/data" --model dual --batch-size 1024 --log-every 100 --export "$out/student" "$@"
echo "== 4. scoring the held-out data with the exported student ($out/student)"
"$build/examples/lockstep-predict" --bundle "$out/student" --data "$out/data/test.tsv" \
  --schema "$out/data/schema.toml" --out "$out/scores.txt"

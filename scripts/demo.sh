#!/usr/bin/env bash
# The main job, from a fresh clone: installs missing packages, builds, then
#   1. generates CTR data with a known click model (lockstep-datagen),
#   2. trains the dual DNN — a DIN + cross-network teacher and a plain-MLP student over one
#      shared embedding layer, with online distillation — on 2 MPI ranks with the lockstep
#      trainer (each rank a full replica, one all-reduce per step),
#   3. trains the same student MLP alone (same tables, same data, same ranks) for comparison,
#   4. prints teacher, co-trained student and student-alone AUC side by side with the oracle AUC,
#      and the towers' inference time and dense parameter counts (lockstep-eval --latency),
#   5. exports the student and scores the held-out data with the exported bundle.
# Runs on the GPU when one is visible, else on the CPU; about 2 minutes on 2 idle CPU cores
# after the build. Extra arguments go to both lockstep-train runs.
# RANKS=1 runs a single process; TRAIN=n / TEST=n set the data size (default 1000000 / 100000);
# OUT=dir keeps the data, models and logs there (default: a temporary directory).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh"
build=${LOCKSTEP_BUILD_DIR:-$root/build}
ranks=${RANKS:-2}
train=${TRAIN:-1000000}
test=${TEST:-100000}
out=${OUT:-$(mktemp -d -t lockstep-demo-XXXXXX)}
# Open MPI refuses to run as root unless told to.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
threads=$(( $(nproc) / ranks > 0 ? $(nproc) / ranks : 1 ))

echo "== 1. generating $train + $test samples into $out/data"
"$build/examples/lockstep-datagen" --out "$out/data" --train "$train" --test "$test" \
  --preset demo --shards "$ranks"

# train NAME ARGS...: one pass on $ranks ranks; the log in $out/NAME.log, its result line shown.
train() {
  local name=$1
  shift
  mpirun -np "$ranks" --oversubscribe --bind-to none "$build/examples/lockstep-train" \
    --data "$out/data" --batch-size 1024 --threads "$threads" --log-every 0 "$@" \
    > "$out/$name.log" 2>&1 || {
    cat "$out/$name.log" >&2
    echo "demo.sh: training $name failed (log: $out/$name.log)" >&2
    exit 1
  }
  grep "^result" "$out/$name.log"
}
echo "== 2. training the dual DNN on $ranks rank(s) (examples/configs/dual.toml)"
train dual --model dual --save "$out/dual" --export "$out/student" "$@"
echo "== 3. training the same student MLP alone (embedding_mlp, MLP 128-64-1, the same tables)"
train alone --model embedding_mlp --set 'model.mlp.widths=[128,64,1]' "$@"

echo "== 4. inference time and size per tower (lockstep-eval --latency)"
"$build/examples/lockstep-eval" --model "$out/dual" --data "$out/data/test.tsv" --latency \
  --json "$out/eval.json" > "$out/eval.log" 2>&1 || {
  cat "$out/eval.log" >&2
  exit 1
}
grep "^inference" "$out/eval.log"

# "result: AUC s vs oracle AUC o (gap g) [student]; teacher AUC t; ..."
student=$(sed -n 's/^result: AUC \([0-9.]*\).*/\1/p' "$out/dual.log")
teacher=$(sed -n 's/^result:.*teacher AUC \([0-9.]*\).*/\1/p' "$out/dual.log")
oracle=$(sed -n 's/^result:.*oracle AUC \([0-9.]*\).*/\1/p' "$out/dual.log")
alone=$(sed -n 's/^result: AUC \([0-9.]*\).*/\1/p' "$out/alone.log")
/usr/bin/python3 - "$out/eval.json" "$teacher" "$student" "$alone" "$oracle" "$ranks" <<'EOF'
import json, sys
lat = json.load(open(sys.argv[1]))["latency"]
teacher, student, alone, oracle, ranks = sys.argv[2:7]
t, s = lat["teacher"], lat["student"]
def kib(p): return f"{p['dense_parameters'] * 4 / 1024:.0f} KiB"
print(f"\nThe dual DNN after one pass on {ranks} rank(s), held-out AUC (oracle {oracle}):\n")
print("| model | AUC | inference, batch 1024 | dense parameters |")
print("|---|---|---|---|")
print(f"| teacher (DIN + cross, MLP 512-256-128) | {teacher} | {t['ms']:.1f} ms | {t['dense_parameters']} ({kib(t)}) |")
print(f"| student, co-trained (served) | {student} | {s['ms']:.1f} ms | {s['dense_parameters']} ({kib(s)}) |")
print(f"| student alone (same MLP and tables) | {alone} | | |")
print(f"\nco-trained student - student alone: {float(student) - float(alone):+.4f} AUC; "
      f"teacher/student: {t['ms'] / s['ms']:.1f}x inference time (the student timed inside the "
      "dual model, history lookups included: the exported bundle of step 5 is faster), "
      f"{t['dense_parameters'] / s['dense_parameters']:.1f}x dense parameters "
      "(the embedding tables are served apart, as in seed 002)")
EOF

echo
echo "== 5. scoring the held-out data with the exported student ($out/student)"
"$build/examples/lockstep-predict" --bundle "$out/student" --data "$out/data/test.tsv" \
  --schema "$out/data/schema.toml" --out "$out/scores.txt"

#!/usr/bin/env bash
# Emulation builds (docs/cuda_emulation.md): lockstep-train on an emulated CUDA device with
# dynamic tables, their forward and backward replayed as CUDA graphs, ends two epochs with the
# same replica state whether it runs them at once or stops after the first and resumes from its
# checkpoint (the feasign store's key map, statistics and counters restored on the device).
#   resume_dynamic.sh LOCKSTEP_TRAIN
set -euo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(--device cuda --model din --train-samples 1500 --test-samples 200 --batch-size 96
      --table-rows 1024 --log-every 0 --set 'model.tables_per_column.kind="dynamic"'
      --set model.tables_per_column.accessor.embedx_threshold=1)
hash_of() { tee /dev/stderr | grep -o 'replica state hash [0-9a-f]*' | cut -d' ' -f4; }
graphs_of() { grep -o 'CUDA graphs: [0-9]* steps replayed' "$1" | grep -o '[0-9]*' | head -1; }
"$train" "${args[@]}" --epochs 2 --checkpoint-dir "$dir/at-once" >"$dir/at-once.log" 2>&1 || {
  cat "$dir/at-once.log"; exit 1; }
"$train" "${args[@]}" --epochs 1 --checkpoint-dir "$dir/resumed" >"$dir/first.log" 2>&1 || {
  cat "$dir/first.log"; exit 1; }
"$train" "${args[@]}" --epochs 2 --checkpoint-dir "$dir/resumed" --resume >"$dir/resumed.log" 2>&1 || {
  cat "$dir/resumed.log"; exit 1; }
at_once=$(hash_of <"$dir/at-once.log")
resumed=$(hash_of <"$dir/resumed.log")
replayed=$(graphs_of "$dir/at-once.log")
echo "at once: $at_once, resumed: $resumed; graph replays in the run at once: $replayed"
grep -q 'resumed from' "$dir/resumed.log"
[ -n "$at_once" ] && [ "$at_once" = "$resumed" ]
[ "${replayed:-0}" -gt 0 ]

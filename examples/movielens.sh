#!/usr/bin/env bash
# Real data end to end: MovieLens ratings → behaviour-sequence CTR records (lockstep-data
# movielens) → embedding + MLP, DIN and the dual DNN (lockstep-train --data), and a table of
# their test AUCs. docs/movielens.md describes the conversion and the results.
#
#   examples/movielens.sh                     # ml-latest-small from ../shared/data/ml-latest-small
#   MOVIELENS_DIR=~/ml-latest-small OUT=out/ml examples/movielens.sh --device cpu
#
# Environment: MOVIELENS_DIR (a directory with ratings.csv and movies.csv), OUT (where the data
# and logs go; default a temporary directory), LOCKSTEP_BUILD_DIR (default build/; built with
# scripts/build.sh when a tool is missing), SPLIT (user | new-users | global, default user),
# MAX_LEN (history length, default 100), EPOCHS (default 1), BATCH_SIZE (default 256). Extra
# arguments go to every lockstep-train run. About 1.5 minutes on 2 idle CPU cores (2.5 when they
# are shared).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOCKSTEP_BUILD_DIR:-$root/build}
ml=${MOVIELENS_DIR:-$root/../shared/data/ml-latest-small}
out=${OUT:-$(mktemp -d -t lockstep-movielens-XXXXXX)}
split=${SPLIT:-user}
max_len=${MAX_LEN:-100}
epochs=${EPOCHS:-1}
batch_size=${BATCH_SIZE:-256}

for f in ratings.csv movies.csv; do
  if [[ ! -f $ml/$f ]]; then
    echo "movielens.sh: $ml/$f not found: set MOVIELENS_DIR to a MovieLens directory" \
      "(ml-latest-small: https://grouplens.org/datasets/movielens/)" >&2
    exit 1
  fi
done
ml=$(cd "$ml" && pwd)
if [[ ! -x $build/examples/lockstep-data || ! -x $build/examples/lockstep-train ]]; then
  LOCKSTEP_BUILD_DIR=$build "$root/scripts/build.sh"
fi
start=$SECONDS

echo "== converting $ml into $out/data (split $split, history: liked movies, max_len $max_len)"
"$build/examples/lockstep-data" movielens --ratings "$ml/ratings.csv" --movies "$ml/movies.csv" \
  --out "$out/data" --split "$split" --max-len "$max_len"

# train NAME CONFIG: trains, keeps the log in $out/NAME.log, sets auc (test), valid_auc,
# teacher_auc (dual: on test) and seconds.
train() {
  local name=$1 config=$2 t0=$SECONDS
  shift 2
  echo "== training $name ($config)"
  "$build/examples/lockstep-train" --data "$out/data" --config "$root/examples/configs/$config" \
    --epochs "$epochs" --batch-size "$batch_size" --log-every 0 "$@" > "$out/$name.log" 2>&1 || {
    cat "$out/$name.log" >&2
    echo "movielens.sh: training $name failed (log: $out/$name.log)" >&2
    exit 1
  }
  grep -E "valid at step|^result" "$out/$name.log"
  # "result: validation AUC v[ (best: step s, epoch e)], test AUC t; ..." (with valid.tsv) or
  # "result: AUC t; ..."
  valid_auc=$(sed -n 's/^result: validation AUC \([0-9.]*\).*/\1/p' "$out/$name.log")
  auc=$(sed -n -e 's/^result: validation .*test AUC \([0-9.]*\).*/\1/p' \
               -e 's/^result: AUC \([0-9.]*\).*/\1/p' "$out/$name.log")
  teacher_auc=$(sed -n 's/^result:.*teacher AUC \([0-9.]*\).*/\1/p' "$out/$name.log")
  seconds=$((SECONDS - t0))
}

train mlp movielens_mlp.toml "$@"
mlp_auc=$auc mlp_valid=$valid_auc mlp_s=$seconds
train din movielens_din.toml "$@"
din_auc=$auc din_valid=$valid_auc din_s=$seconds
train dual movielens_dual.toml "$@"
dual_auc=$auc dual_valid=$valid_auc dual_teacher_auc=$teacher_auc dual_s=$seconds

echo
echo "MovieLens ($(basename "$ml"), split $split, max_len $max_len, $epochs epoch(s), batch $batch_size)"
echo
echo "| model | config | test AUC | valid AUC | train + eval time |"
echo "|---|---|---|---|---|"
echo "| embedding + MLP (mean-pooled history) | movielens_mlp.toml | $mlp_auc | ${mlp_valid:-–} | ${mlp_s} s |"
echo "| DIN (softmax attention) | movielens_din.toml | $din_auc | ${din_valid:-–} | ${din_s} s |"
echo "| dual DNN, student (served MLP) | movielens_dual.toml | $dual_auc | ${dual_valid:-–} | ${dual_s} s |"
echo "| dual DNN, teacher (DIN + cross) | movielens_dual.toml | $dual_teacher_auc | | (same run) |"
echo
echo "total $((SECONDS - start)) s; data and logs in $out"

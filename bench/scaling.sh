#!/usr/bin/env bash
# Weak and strong scaling of lockstep-train over 1..N ranks: samples/s and efficiency, as CSV
# and a PNG plot.
#
#   bench/scaling.sh [MAX_RANKS=4] [OUT_PREFIX=bench/results/scaling-<date>-<device>]
#
# Environment: DEVICE (cpu | cuda, default cpu), BATCH (per rank, default 1024),
# SAMPLES_PER_RANK (weak scaling, default 200000), STRONG_SAMPLES (strong scaling total,
# default 400000), THREADS (OpenBLAS threads per rank, default 1), BUILD (default build/).
# Weak scaling keeps the samples per rank fixed (ideal: samples/s grows n-fold); strong scaling
# keeps the total fixed. efficiency = (samples/s at n) / (n × samples/s at 1).
# On a machine with fewer cores than ranks the ranks share cores (--oversubscribe): the numbers
# then measure the sync point's overhead, not the hardware's parallelism.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
max=${1:-4}
device=${DEVICE:-cpu}
out=${2:-$root/bench/results/scaling-$(date +%Y-%m-%d)-$device}
build=${BUILD:-$root/build}
batch=${BATCH:-1024}
per_rank=${SAMPLES_PER_RANK:-200000}
strong=${STRONG_SAMPLES:-400000}
threads=${THREADS:-1}
train="$build/examples/lockstep-train"
[ -x "$train" ] || { echo "scaling.sh: $train not built (run scripts/build.sh)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

run() {  # ranks samples -> samples/s
  local n=$1 samples=$2 line
  line=$(mpirun -np "$n" --oversubscribe --bind-to none "$train" --device "$device" \
           --synthetic demo --train-samples "$samples" --test-samples 2000 --batch-size "$batch" \
           --threads "$threads" --log-every 0 --log-level warn 2>&1 | grep '^result:') || {
    echo "scaling.sh: run with $n rank(s) failed" >&2; exit 1; }
  sed -E 's/.* ([0-9]+) samples\/s.*/\1/' <<<"$line"
}

echo "mode,ranks,samples,samples_per_s,efficiency" >"$out.csv"
for mode in weak strong; do
  base=""
  for ((n = 1; n <= max; n++)); do
    samples=$strong
    [ "$mode" = weak ] && samples=$((per_rank * n))
    sps=$(run "$n" "$samples")
    [ -z "$base" ] && base=$sps
    eff=$(awk -v s="$sps" -v b="$base" -v n="$n" 'BEGIN { printf "%.3f", s / (n * b) }')
    echo "$mode,$n,$samples,$sps,$eff" | tee -a "$out.csv"
  done
done
python3 "$root/bench/plot_scaling.py" "$out.csv" "$out.png" \
  "lockstep-train scaling on $(nproc) cores, $device, batch $batch per rank"
echo "wrote $out.csv and $out.png"

#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA device (run from the repository root; results go to
# $OUT, default ./gpu-results): build with CUDA against .device/sysroot (scripts/device_prepare.sh),
# the GPU parity tests, the same with LOCKSTEP_SYNC_CHECK=1, the unit tests, compute-sanitizer
# memcheck on the GPU tests without the benchmark-scale cases, the benchmarks and the PyTorch peer
# (.device/peers/torch_bench.py, with and without --compile).
#
# Sized for one device call (at most 10 minutes, the machine's start not counted): every stage
# runs under `timeout`, capped at its own limit and at what is left of BUDGET_S minus what the
# later stages are promised, so a slow stage cannot starve the rest. Each stage writes its own
# log; a failing or timed-out stage does not stop the others. summary.txt has one line each.
#   STAGES="build gpu sync unit sanitize bench peers" (default all), JOBS (default nproc),
#   BUDGET_S (default 540)
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
sys="$root/.device/sysroot/usr"
lib="$sys/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread:${LD_LIBRARY_PATH:-}"
export PATH="/usr/local/cuda/bin:$PATH"
build="$root/build-gpu"
stages=${STAGES:-build gpu sync unit sanitize bench peers}
jobs=${JOBS:-$(nproc)}
budget=${BUDGET_S:-540}
t_start=$(date +%s)
# Seconds each stage may take at most, and the floor it is promised when it is still to come.
declare -A cap=([build]=300 [gpu]=60 [sync]=60 [unit]=90 [sanitize]=120 [bench]=120 [peers]=90)
declare -A floor=([build]=120 [gpu]=20 [sync]=20 [unit]=30 [sanitize]=40 [bench]=60 [peers]=40)
promised() {  # seconds promised to the stages after $1
  local after=0 total=0 s
  for s in $stages; do
    if [ "$after" = 1 ]; then total=$((total + ${floor[$s]:-0})); fi
    [ "$s" = "$1" ] && after=1
  done
  echo "$total"
}
limit_for() {  # stage -> seconds it may run now
  local left=$((budget - ($(date +%s) - t_start) - $(promised "$1")))
  local c=${cap[$1]:-60}
  [ "$left" -lt "$c" ] && c=$left
  [ "$c" -lt 5 ] && c=5
  echo "$c"
}
run() {  # stage name command...: runs under the stage's remaining time
  local stage=$1 name=$2; shift 2
  local limit; limit=$(limit_for "$stage")
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local verdict=ok; [ $rc -ne 0 ] && verdict="FAILED (exit $rc)"; [ $rc -eq 124 ] && verdict="TIMED OUT"
  printf '%-18s %-16s %4ss of %4ss  %s\n' "$name" "$verdict" "$(($(date +%s) - t0))" "$limit" "$*" \
    | tee -a "$out/summary.txt"
  tail -4 "$out/$name.log" | sed 's/^/   | /' >>"$out/summary.txt"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -1;
  git -C "$root" rev-parse --short HEAD 2>/dev/null; nproc; } >"$out/machine.txt" 2>&1
gpu_tests="$build/test/lockstep_gpu_tests"
for stage in $stages; do
  case $stage in
    build)
      run build configure cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DLOCKSTEP_WITH_CUDA=ON -DCMAKE_PREFIX_PATH="$sys" \
        -DOpenBLAS_INCLUDE_DIRS="$sys/include/x86_64-linux-gnu/openblas-pthread" \
        -DOpenBLAS_LIBRARIES="$lib/openblas-pthread/libopenblas.so" \
        -DXXHASH_INCLUDE_DIR="$sys/include" -DXXHASH_LIBRARY="$lib/libxxhash.so" \
        -DZSTD_INCLUDE_DIR="$sys/include" -DZSTD_LIBRARY="$lib/libzstd.so"
      run build build cmake --build "$build" -j "$jobs" ;;
    gpu)
      run gpu gpu_tests "$gpu_tests" --durations yes ;;
    sync)  # every kernel synchronised: an asynchronous error names its kernel
      run sync gpu_tests_sync env LOCKSTEP_SYNC_CHECK=1 "$gpu_tests" ;;
    unit)
      run unit unit_tests bash -c "cd '$build' && ctest -j '$jobs' -L unit --output-on-failure" ;;
    sanitize)  # the benchmark-scale cases ([large]) would take minutes under memcheck
      run sanitize sanitizer compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$gpu_tests" "~[large]" ;;
    bench)
      run bench bench_kernels "$build/bench/lockstep-bench-kernels" --device cuda --json "$out/bench_kernels.json"
      run bench bench_models "$build/bench/lockstep-bench-models" --device cuda
      run bench bench_models_no_graphs "$build/bench/lockstep-bench-models" --device cuda --no-cuda-graphs
      run bench bench_models_tf32 "$build/bench/lockstep-bench-models" --device cuda --allow-tf32
      run bench bench_models_bf16 "$build/bench/lockstep-bench-models" --device cuda --allow-bf16
      run bench bench_models_profile "$build/bench/lockstep-bench-models" --device cuda --iters 3 --profile
      run bench bench_sync "$build/bench/lockstep-bench-sync" --device cuda --comm local --steps 200
      run bench bench_feasign "$build/bench/lockstep-bench-feasign" --capacity 4194304 --reps 1 ;;
    peers)
      peer="$root/.device/peers/torch_bench.py"
      run peers torch_eager python3 "$peer" --workload all --device cuda --batch 4096 --steps 50
      run peers torch_compile python3 "$peer" --workload all --device cuda --batch 4096 --steps 50 --compile ;;
  esac
done
echo "total $(($(date +%s) - t_start)) s of a budget of $budget s" | tee -a "$out/summary.txt"

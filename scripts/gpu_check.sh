#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA device (run from the repository root; results go to
# $OUT, default ./gpu-results): build with CUDA against .device/sysroot (scripts/device_prepare.sh),
# run the GPU parity tests and the unit tests, compute-sanitizer (memcheck) on the GPU tests, and
# the benchmarks. Each stage writes its own log; a failing stage does not stop the others.
#   STAGES="build test sanitize bench" (default all), JOBS (default nproc)
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
sys="$root/.device/sysroot/usr"
lib="$sys/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread:${LD_LIBRARY_PATH:-}"
export PATH="/usr/local/cuda/bin:$PATH"
build="$root/build-gpu"
stages=${STAGES:-build test sanitize bench}
jobs=${JOBS:-$(nproc)}
run() {  # name command...
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  local t0=$(date +%s)
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $(($(date +%s) - t0)) s" | tee -a "$out/summary.txt"
  tail -5 "$out/$name.log" | sed 's/^/   | /' | tee -a "$out/summary.txt"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -1;
  git -C "$root" rev-parse --short HEAD 2>/dev/null; } >"$out/machine.txt" 2>&1
for stage in $stages; do
  case $stage in
    build)
      run configure cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DLOCKSTEP_WITH_CUDA=ON -DCMAKE_PREFIX_PATH="$sys" \
        -DOpenBLAS_INCLUDE_DIRS="$sys/include/x86_64-linux-gnu/openblas-pthread" \
        -DOpenBLAS_LIBRARIES="$lib/openblas-pthread/libopenblas.so" \
        -DXXHASH_INCLUDE_DIR="$sys/include" -DXXHASH_LIBRARY="$lib/libxxhash.so"
      run build cmake --build "$build" -j "$jobs" ;;
    test)
      run gpu_tests "$build/test/lockstep_gpu_tests" --durations yes
      (cd "$build" && run ctest ctest -j "$jobs" -L "unit|gpu" --output-on-failure) ;;
    sanitize)
      run sanitizer compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$build/test/lockstep_gpu_tests" ;;
    bench)
      run bench_kernels "$build/bench/lockstep-bench-kernels" --device cuda --json "$out/bench_kernels.json"
      run bench_models "$build/bench/lockstep-bench-models" --device cuda
      run bench_sync "$build/bench/lockstep-bench-sync" --device cuda --comm local --steps 200
      run train_demo "$build/examples/lockstep-train" --device cuda --synthetic demo
      run train_din_bench "$build/examples/lockstep-train" --device cuda --synthetic din-bench \
        --model din --train-samples 2000000 --test-samples 50000 --batch-size 4096 --table-rows 1048576 ;;
  esac
done

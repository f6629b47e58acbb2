#!/usr/bin/env bash
# The GPU checks, for a machine with a CUDA device (run from the repository root): build the GPU
# tests and the benchmarks with CUDA against .device/sysroot (scripts/device_prepare.sh), then, most
# important first: the GPU parity tests, the model benchmarks with and without CUDA graphs, the
# lockstep sync benchmark, the PyTorch peer (.device/peers/torch_bench.py: eager side by side
# through bench/vs_torch.py, then --compile),
# the kernel and feasign benchmarks, the GPU tests with LOCKSTEP_SYNC_CHECK=1, compute-sanitizer memcheck,
# and, with time left, Nsight Compute's memory counters for the kernels the emulator's
# memory-access profile estimated (docs/cuda_emulation.md), to check the estimate.
#
# Sized for one device call (at most 10 minutes, the machine's start not counted): every command
# runs under `timeout`, capped at its own limit and at what is left of BUDGET_S minus the floors
# promised to the stages still to come, so a slow stage cannot starve the rest. Output is line
# buffered, so a command stopped at its limit still leaves what it printed.
#
# The device tool brings back at most 8 files: every log goes to $WORK (default
# /tmp/gpu-results), and after every command $OUT (default ./gpu-results) gets a fresh
# gpu-results.tgz of all of them plus summary.txt (one line per command and its last lines).
#   STAGES="build gpu bench peers kernels sync sanitize ncu" (default all, in that order), JOBS (default
#   nproc), BUDGET_S (default 540)
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/gpu-results}
work=${WORK:-/tmp/gpu-results}
rm -rf "$work"  # nothing of an earlier run goes back as this one's
mkdir -p "$out" "$work"
failed=0
sys="$root/.device/sysroot/usr"
lib="$sys/lib/x86_64-linux-gnu"
# Only lockstep's own programs see the unpacked libraries (PyTorch brings its own).
libs=(env "LD_LIBRARY_PATH=$lib:$lib/openblas-pthread:${LD_LIBRARY_PATH:-}")
lockstep_env=("${libs[@]}" stdbuf -oL -eL)
# A missing or unusable device fails the GPU tests here instead of skipping them.
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1 LOCKSTEP_REQUIRE_GPU=1
build="$root/build-gpu"
stages=${STAGES:-build gpu bench peers kernels sync sanitize ncu}
jobs=${JOBS:-$(nproc)}
budget=${BUDGET_S:-540}
t_start=$(date +%s)
# Seconds promised to a stage while it is still to come.
declare -A floor=([build]=150 [gpu]=60 [bench]=60 [peers]=60 [kernels]=20 [sync]=20 [sanitize]=30)
promised() {  # seconds promised to the stages after $1
  local after=0 total=0 s
  for s in $stages; do
    if [ "$after" = 1 ]; then total=$((total + ${floor[$s]:-0})); fi
    [ "$s" = "$1" ] && after=1
  done
  echo "$total"
}
pack() {  # everything so far into $out, replaced atomically
  cp "$work/summary.txt" "$out/summary.txt" 2>/dev/null
  tar -czf "$out/gpu-results.tgz.part" -C "$work" . && mv "$out/gpu-results.tgz.part" "$out/gpu-results.tgz"
}
run() {  # stage name cap command...: runs for at most min(cap, what the stage may still take)
  local stage=$1 name=$2 cap=$3; shift 3
  local limit=$((budget - ($(date +%s) - t_start) - $(promised "$stage")))
  [ "$limit" -gt "$cap" ] && limit=$cap
  local t0 rc verdict
  t0=$(date +%s)
  if [ "$limit" -lt 5 ]; then
    rc=125; verdict="SKIPPED (no time left)"
    : >"$work/$name.log"
  else
    timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1
    rc=$?
    verdict=ok; [ $rc -ne 0 ] && verdict="FAILED (exit $rc)"; [ $rc -eq 124 ] && verdict="TIMED OUT"
  fi
  printf '%-22s %-22s %4ss of %4ss  %s\n' "$name" "$verdict" "$(($(date +%s) - t0))" "$limit" "$*" \
    | sed -e "s|$root/||g" -e 's|env LD_LIBRARY_PATH=[^ ]* ||' -e 's|stdbuf -oL -eL ||' >>"$work/summary.txt"
  [ -f "$work/$name.log" ] && tail -4 "$work/$name.log" | cut -c1-300 | sed 's/^/   | /' >>"$work/summary.txt"
  pack
  [ $rc -ne 0 ] && failed=$((failed + 1))
  return $rc
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -1;
  git -C "$root" rev-parse --short HEAD 2>/dev/null; git -C "$root" status --short | head -20; nproc;
  python3 -c 'import torch; print("torch", torch.__version__)'; } >"$work/machine.txt" 2>&1
gpu_tests=("${lockstep_env[@]}" "$build/test/lockstep_gpu_tests")
models=("${lockstep_env[@]}" "$build/bench/lockstep-bench-models")
peer="$root/.device/peers/torch_bench.py"
for stage in $stages; do
  case $stage in
    build)  # only what the checks run: no examples, no unit or MPI tests
      run build configure 60 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DLOCKSTEP_WITH_CUDA=ON -DLOCKSTEP_BUILD_EXAMPLES=OFF -DCMAKE_PREFIX_PATH="$sys" \
        -DOpenBLAS_INCLUDE_DIRS="$sys/include/x86_64-linux-gnu/openblas-pthread" \
        -DOpenBLAS_LIBRARIES="$lib/openblas-pthread/libopenblas.so" \
        -DXXHASH_INCLUDE_DIR="$sys/include" -DXXHASH_LIBRARY="$lib/libxxhash.so" \
        -DZSTD_INCLUDE_DIR="$sys/include" -DZSTD_LIBRARY="$lib/libzstd.so"
      # The tests first: a build stopped at its limit still leaves them to run.
      run build build_tests 400 cmake --build "$build" -j "$jobs" --target lockstep_gpu_tests
      run build build_bench 400 cmake --build "$build" -j "$jobs" --target lockstep-bench-models \
        lockstep-bench-sync lockstep-bench-kernels lockstep-bench-feasign ;;
    gpu)  # three processes, the risky cases last: a sticky CUDA error or a hang in the deliberate
          # bad-input cases or in stream capture cannot void the parity cases
      run gpu gpu_tests 100 "${gpu_tests[@]}" --durations yes "~[errors]~[graphs]"
      run gpu gpu_tests_graphs 40 "${gpu_tests[@]}" --durations yes "[graphs]"
      run gpu gpu_tests_errors 30 "${gpu_tests[@]}" --durations yes "[errors]" ;;
    bench)
      run bench bench_models 60 "${models[@]}" --device cuda
      run bench bench_models_no_graphs 45 "${models[@]}" --device cuda --no-cuda-graphs
      run bench bench_sync 30 "${lockstep_env[@]}" "$build/bench/lockstep-bench-sync" --device cuda --comm local --steps 200
      run bench bench_models_bf16 40 "${models[@]}" --device cuda --allow-bf16
      run bench bench_models_profile 30 "${models[@]}" --device cuda --iters 3 --profile ;;
    peers)  # eager side by side (bench/vs_torch.py: 3 alternating pairs, median ratio); compile once
      wrapper="$work/bench-models.sh"  # lockstep's libraries for lockstep only, not for PyTorch
      printf '#!/bin/sh\nexec env LD_LIBRARY_PATH="%s:%s/openblas-pthread:${LD_LIBRARY_PATH:-}" "%s" "$@"\n' \
        "$lib" "$lib" "$build/bench/lockstep-bench-models" >"$wrapper"
      chmod +x "$wrapper"
      # like for like: batches on the device on both sides (bench_models above stages each step's)
      run peers vs_torch_eager 120 python3 "$root/bench/vs_torch.py" --bench "$wrapper" \
        --torch-bench "$peer" --torch-python python3 --device cuda --batch 4096 --pairs 3 --iters 20 \
        --batches-on-device
      run peers torch_compile 150 python3 "$peer" --workload all --device cuda --batch 4096 --steps 50 --compile ;;
    kernels)
      run kernels bench_kernels 40 "${lockstep_env[@]}" "$build/bench/lockstep-bench-kernels" --device cuda --json "$work/bench_kernels.json"
      run kernels bench_feasign 30 "${lockstep_env[@]}" "$build/bench/lockstep-bench-feasign" --capacity 4194304 --reps 1
      # end to end with dynamic tables (the feasign store on the device) against the hashed run
      run kernels bench_models_dynamic 40 "${models[@]}" --device cuda --models din,dual \
        --tables dynamic --batches-on-device ;;
    sync)  # every kernel synchronised: an asynchronous error names its kernel
      run sync gpu_tests_sync 60 env LOCKSTEP_SYNC_CHECK=1 "${gpu_tests[@]}" ;;
    sanitize)  # the benchmark-scale cases ([large]) and the graph tests' tens of thousands of
               # launches would take minutes under memcheck
      run sanitize sanitizer 150 "${libs[@]}" compute-sanitizer --tool memcheck \
        --error-exitcode 9 "$build/test/lockstep_gpu_tests" "~[large]~[graphs]" ;;
    ncu)  # the timed steps only (bench::median_ms brackets them with cudaProfilerStart/Stop)
      if command -v ncu >/dev/null; then
        run ncu ncu_memory 90 "${lockstep_env[@]}" ncu --profile-from-start off --launch-count 24 \
          -k 'regex:prelu_backward|bias_grad|attention|pooled_lookup_forward' --metrics \
          gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_requests_pipe_lsu_mem_global_op_st.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum \
          "$build/bench/lockstep-bench-models" --device cuda --iters 1 --models din,bst
      else
        echo "ncu_memory             SKIPPED (no ncu on this machine)" >>"$work/summary.txt"
      fi ;;
  esac
done
echo "total $(($(date +%s) - t_start)) s of a budget of $budget s" >>"$work/summary.txt"
pack
cat "$work/summary.txt"
[ "$failed" -eq 0 ]  # the exit status: 1 when any command failed, timed out or was skipped

#pragma once
// Timing and reporting helpers shared by the benchmarks.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/config.h"
#include "lockstep/core/context.h"

#if LOCKSTEP_CUDA_ENABLED
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#endif

namespace lockstep::bench {

/// The median of `values` (the upper one of an even count); 0 when there are none.
inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0.0 : values[values.size() / 2];
}

/// Median host wall time (steady_clock) in milliseconds of `iters` runs of fn, after `warmup`
/// runs and a synchronisation: what the host spends in fn, whatever it enqueues.
inline double median_host_ms(const Context& ctx, const std::function<void()>& fn, int warmup,
                             int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  ctx.synchronize();
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(std::move(times));
}

/// Median wall time in milliseconds of `iters` runs of fn after `warmup` runs. On CUDA each run
/// is bracketed by events on the context's stream (device time); on the CPU by steady_clock.
/// On CUDA the timed runs are also bracketed by cudaProfilerStart/Stop, so that a profiler
/// (nsys --capture-range=cudaProfilerApi, ncu --profile-from-start off, the emulator's
/// LOCKSTEP_EMU_PROFILE) sees them without the warm-up.
inline double median_ms(const Context& ctx, const std::function<void()>& fn, int warmup,
                        int iters) {
#if LOCKSTEP_CUDA_ENABLED
  if (ctx.is_cuda()) {
    for (int i = 0; i < warmup; ++i) fn();
    ctx.synchronize();
    std::vector<double> times;
    auto stream = static_cast<cudaStream_t>(ctx.stream());
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    cudaProfilerStart();
    for (int i = 0; i < iters; ++i) {
      cudaEventRecord(start, stream);
      fn();
      cudaEventRecord(stop, stream);
      cudaEventSynchronize(stop);
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      times.push_back(ms);
    }
    cudaProfilerStop();
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return median(std::move(times));
  }
#endif
  return median_host_ms(ctx, fn, warmup, iters);
}

/// One row of a result table.
struct Row {
  std::string name;
  double ms;
  double achieved;  // in `unit`
  double ceiling;   // same unit; 0 when unknown
  std::string unit;
  std::string note;
};

inline void print_table(const std::string& title, const std::vector<Row>& rows) {
  std::printf("\n%s\n", title.c_str());
  std::printf("%-34s %10s %12s %12s %8s  %s\n", "case", "median ms", "achieved", "ceiling",
              "of peak", "note");
  for (const auto& r : rows) {
    char frac[16] = "-";
    if (r.ceiling > 0) std::snprintf(frac, sizeof frac, "%.1f%%", 100.0 * r.achieved / r.ceiling);
    std::printf("%-34s %10.3f %7.1f %-4s %7.1f %-4s %8s  %s\n", r.name.c_str(), r.ms, r.achieved,
                r.unit.c_str(), r.ceiling, r.unit.c_str(), frac, r.note.c_str());
  }
}

}  // namespace lockstep::bench

#pragma once
// Internal: how a CUDA kernel reports invalid input (kernels/input_errors.h) into its context's
// device error record (lockstep/core/device_error.h) instead of throwing.
//
// The launcher takes an ErrorSink for the launch (error_sink(ctx, op)) and passes it to the
// kernel by value; a thread that finds a bad element skips it and calls record_input_error().
// The record keeps the first launch's error, and within that launch the error with the smallest
// input_error_order(): the one the CPU reference would throw. Recording is the rare path, so it
// takes a spin lock (safe under independent thread scheduling, sm_70 and newer) to write the
// record's fields together; valid input never touches the record.

#include <cstring>

#include "kernels/cuda/launch.cuh"
#include "kernels/input_errors.h"
#include "lockstep/core/device_error.h"

namespace lockstep::kernels::cuda {

/// Where one kernel launch records invalid input. Passed to the kernel by value.
struct ErrorSink {
  DeviceErrorRecord* record;  // ctx.device_error()
  uint64_t launch;            // ctx.next_launch_id()
  char op[sizeof(DeviceErrorRecord::op)];
};

/// The sink of one launch of `op` on ctx.
inline ErrorSink error_sink(const Context& ctx, const char* op) {
  ErrorSink sink{ctx.device_error(), ctx.next_launch_id(), {}};
  const size_t n = std::strlen(op);
  LOCKSTEP_ASSERT(sink.record != nullptr && n < sizeof(sink.op));
  std::memcpy(sink.op, op, n);  // the rest stays NUL
  return sink;
}

/// True when an earlier launch recorded an error that is not reported yet: kernels that update
/// state (the sparse optimizers) then change nothing, as the CPU, which threw at that error,
/// would not have reached them.
__device__ inline bool error_recorded_before(const ErrorSink& sink) {
  const volatile DeviceErrorRecord* r = sink.record;
  if (r->code == 0) return false;
  __threadfence();  // read launch after code (a writer stores code last)
  return r->launch != sink.launch;
}

/// Records error `check` at `position` with the message args a0..a3 (see InputError), unless
/// the record already holds an error of an earlier launch or one of this launch that the CPU
/// reference would report first.
__device__ inline void record_input_error(const ErrorSink& sink, InputError check, int64_t position,
                                          int64_t a0, int64_t a1 = 0, int64_t a2 = 0,
                                          int64_t a3 = 0) {
  volatile DeviceErrorRecord* r = sink.record;
  const uint64_t order = input_error_order(check, position);
  // Without the lock: most threads of a bad batch stop here.
  if (r->code != 0) {
    __threadfence();
    if (r->launch != sink.launch || r->order <= order) return;
  }
  while (atomicCAS(&sink.record->lock, 0u, 1u) != 0u) __nanosleep(64);
  __threadfence();
  if (r->code == 0 || (r->launch == sink.launch && order < r->order)) {
    r->launch = sink.launch;
    r->order = order;
    r->args[0] = a0;
    r->args[1] = a1;
    r->args[2] = a2;
    r->args[3] = a3;
    for (size_t i = 0; i < sizeof(sink.op); ++i) r->op[i] = sink.op[i];
    __threadfence();
    r->code = static_cast<int32_t>(check);
  }
  __threadfence();
  atomicExch(&sink.record->lock, 0u);
}

}  // namespace lockstep::kernels::cuda

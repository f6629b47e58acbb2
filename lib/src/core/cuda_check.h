#pragma once
// Internal: checks for CUDA runtime and cuBLAS calls and for kernel launches. Only include in
// code compiled when LOCKSTEP_CUDA_ENABLED is 1.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "lockstep/core/context.h"
#include "lockstep/core/error.h"

namespace lockstep::detail {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file,
                                     int line);
/// After a kernel launch: reports launch errors; with LOCKSTEP_SYNC_CHECK=1 in the environment
/// also synchronises so that an asynchronous fault is attributed to the right kernel.
void check_kernel_launch(const Context& ctx, const char* kernel, const char* file, int line);

/// cudaEventQuery that leaves no trace of "not ready" (no error, only an unfinished event) as
/// the thread's last error, where a later cudaGetLastError/cudaPeekAtLastError would find it:
/// cudaSuccess, cudaErrorNotReady, or the real error.
inline cudaError_t query_event(cudaEvent_t event) {
  const cudaError_t state = cudaEventQuery(event);
  if (state == cudaErrorNotReady) (void)cudaGetLastError();
  return state;
}

inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.stream());
}
inline cublasHandle_t cublas_of(const Context& ctx) {
  return static_cast<cublasHandle_t>(ctx.cublas());
}

}  // namespace lockstep::detail

#define LOCKSTEP_CUDA_CHECK(expr)                                                     \
  do {                                                                                \
    const cudaError_t lockstep_err_ = (expr);                                         \
    if (lockstep_err_ != cudaSuccess)                                                 \
      ::lockstep::detail::throw_cuda_error(lockstep_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define LOCKSTEP_CUBLAS_CHECK(expr)                                                    \
  do {                                                                                 \
    const cublasStatus_t lockstep_st_ = (expr);                                        \
    if (lockstep_st_ != CUBLAS_STATUS_SUCCESS)                                         \
      ::lockstep::detail::throw_cublas_error(lockstep_st_, #expr, __FILE__, __LINE__); \
  } while (0)

/// Use right after `kernel<<<...>>>(...)`.
#define LOCKSTEP_KERNEL_CHECK(ctx, name) \
  ::lockstep::detail::check_kernel_launch((ctx), (name), __FILE__, __LINE__)

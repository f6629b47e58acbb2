#pragma once
// Shared by every kernel header: the CPU/CUDA dispatch.
//
// Each op `foo` has
//   cpu::foo<T>(const Context&, ...)   the plain, commented reference (T = float or double),
//   cuda::foo(const Context&, ...)     the CUDA implementation (float), same arguments,
//   foo<T>(const Context&, ...)        the dispatcher used by layers: runs on ctx's device.
// Pointers passed to a kernel live on ctx's device. Double precision is CPU-only (it exists for
// the finite-difference gradient checks); asking for it on CUDA throws lockstep::Error.

#include <cstdint>
#include <type_traits>

#include "lockstep/config.h"
#include "lockstep/core/context.h"
#include "lockstep/core/error.h"

namespace lockstep::kernels {
namespace detail {
/// Throws: `op` has no CUDA kernel for this element type / this build has no CUDA.
[[noreturn]] void no_cuda_kernel(const Context& ctx, const char* op, size_t element_size);
}  // namespace detail

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace lockstep::kernels

/// Body of a dispatcher: LOCKSTEP_DISPATCH(T, ctx, op, args...) calls cpu::op<T>(ctx, args...)
/// on a CPU context and cuda::op(ctx, args...) on a CUDA context.
#define LOCKSTEP_DISPATCH(T, ctx, op, ...)                                    \
  do {                                                                        \
    if ((ctx).is_cpu()) {                                                     \
      ::lockstep::kernels::cpu::op<T>((ctx), __VA_ARGS__);                    \
    } else if constexpr (LOCKSTEP_CUDA_ENABLED && std::is_same_v<T, float>) { \
      ::lockstep::kernels::cuda::op((ctx), __VA_ARGS__);                      \
    } else {                                                                  \
      ::lockstep::kernels::detail::no_cuda_kernel((ctx), #op, sizeof(T));     \
    }                                                                         \
  } while (0)

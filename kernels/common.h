#pragma once
// Shared by every kernel header: how an op is declared, validated and dispatched.
//
// Each op `foo` has
//   cpu::foo<T>(const Context&, ...)   the plain, commented reference (T = float or double),
//                                      defined in kernels/cpu/*.cpp,
//   cuda::foo(const Context&, ...)     the CUDA implementation (float), same arguments,
//                                      defined in kernels/cuda/*.cu,
//   foo<T>(const Context&, ...)        the dispatcher used by layers: validates, then runs on
//                                      ctx's device.
// The header of an op (kernels/foo.h) states the contract once, in a comment, and then writes
//   LOCKSTEP_KERNEL_IMPLS(foo, <parameter list written with T>)    declares cpu:: and cuda::,
//   namespace detail { inline void check_foo(...) }               the argument checks,
//   template <class T> void foo(<parameter list>) {               the dispatcher:
//     detail::check_foo(...);                                        validate ONCE,
//     LOCKSTEP_DISPATCH(T, ctx, foo, <arguments>);                   then run.
//   }
// Validation happens in the dispatcher only: sizes, strides and scalar arguments, with messages
// that name the op and the argument. The implementations trust those and do not repeat them;
// checks that need the data itself (CSR offsets, ids, sequence lengths) can only run where the
// data is readable: the CPU reference throws; the CUDA kernels that take ids, offsets or device
// row counts run the same checks on the device and record a failure in the context's device
// error record, which the host throws with the CPU's message at its next read (to_host(),
// ctx.check_device_errors(); see kernels/input_errors.h), while sequence lengths are clamped, as
// their headers say. Either way a bad element is never read or written out of bounds. Code that
// calls cpu:: or cuda:: directly (a kernel built from other kernels, a test's reference) passes
// arguments it has validated itself.
// Pointers passed to a kernel live on ctx's device. Double precision is CPU-only (it exists for
// the finite-difference gradient checks); asking for it on CUDA throws lockstep::Error.

#include <cstdint>
#include <type_traits>

#include "lockstep/config.h"
#include "lockstep/core/context.h"
#include "lockstep/core/error.h"
#include "lockstep/core/launch_recorder.h"
#include "lockstep/core/profile.h"

namespace lockstep::kernels {
namespace detail {
/// Throws: `op` has no CUDA kernel for this element type / this build has no CUDA.
[[noreturn]] void no_cuda_kernel(const Context& ctx, const char* op, size_t element_size);

// Building blocks of the dispatchers' argument checks; each message names the op and the
// argument.

/// Throws unless size >= 0: "<op>: <name> = <size> is negative".
inline void check_size(const char* op, const char* name, int64_t size) {
  LOCKSTEP_CHECK(size >= 0, "{}: {} = {} is negative (sizes must be >= 0)", op, name, size);
}

/// Throws unless a row stride covers its row: ld >= width.
inline void check_ld(const char* op, const char* ld_name, int64_t ld, const char* width_name,
                     int64_t width) {
  LOCKSTEP_CHECK(ld >= width, "{}: {} = {} is smaller than the row width {} = {}", op, ld_name, ld,
                 width_name, width);
}

/// Throws unless every lengths[i], i < count, is in [0, max]; names the first bad sample.
/// Reads `lengths`, so only the CPU references call it (host memory).
inline void check_lengths(const char* op, int64_t count, const int64_t* lengths, int64_t max,
                          const char* max_name) {
  if (count <= 0) return;
  LOCKSTEP_CHECK(lengths != nullptr, "{}: lengths is null", op);
  for (int64_t i = 0; i < count; ++i) {
    LOCKSTEP_CHECK(lengths[i] >= 0 && lengths[i] <= max,
                   "{}: lengths[{}] = {} is outside [0, {} = {}]", op, i, lengths[i], max_name,
                   max);
  }
}
}  // namespace detail

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace lockstep::kernels

/// Body of a dispatcher: LOCKSTEP_DISPATCH(T, ctx, op, args...) calls cpu::op<T>(ctx, args...)
/// on a CPU context and cuda::op(ctx, args...) on a CUDA context.
/// With a LaunchRecorder attached to ctx (lockstep/core/launch_recorder.h) the launch goes
/// through it: logged, then run, kept or skipped by its mode.
#define LOCKSTEP_DISPATCH(T, ctx, op, ...)                                             \
  do {                                                                                 \
    const ::lockstep::ProfileScope lockstep_profile_scope_(                            \
        (ctx), #op, ::lockstep::ProfileScope::Kind::Kernel);                           \
    ::lockstep::LaunchRecorder* const lockstep_recorder_ = (ctx).recorder();           \
    if ((ctx).is_cpu()) {                                                              \
      if (lockstep_recorder_ != nullptr)                                               \
        lockstep_recorder_->launch((ctx), true, #op, &::lockstep::kernels::cpu::op<T>, \
                                   __VA_ARGS__);                                       \
      else                                                                             \
        ::lockstep::kernels::cpu::op<T>((ctx), __VA_ARGS__);                           \
    } else if constexpr (LOCKSTEP_CUDA_ENABLED && std::is_same_v<T, float>) {          \
      if (lockstep_recorder_ != nullptr)                                               \
        lockstep_recorder_->launch((ctx), false, #op, &::lockstep::kernels::cuda::op,  \
                                   __VA_ARGS__);                                       \
      else                                                                             \
        ::lockstep::kernels::cuda::op((ctx), __VA_ARGS__);                             \
    } else {                                                                           \
      ::lockstep::kernels::detail::no_cuda_kernel((ctx), #op, sizeof(T));              \
    }                                                                                  \
  } while (0)

/// Declares both implementations of `op` from ONE parameter list written with the element type T:
///   LOCKSTEP_KERNEL_IMPLS(scale, const Context& ctx, int64_t n, T alpha, const T* x, T* y)
/// declares
///   namespace cpu  { template <class T> void scale(const Context& ctx, int64_t n, T alpha,
///                                                   const T* x, T* y); }
///   namespace cuda { void scale(const Context& ctx, int64_t n, float alpha, const float* x,
///                               float* y); }
/// The CUDA declaration goes through the function type detail::scale_signature<float>, so its
/// definition in kernels/cuda/*.cu is an ordinary function with float written for T. Use it
/// inside namespace lockstep::kernels.
#define LOCKSTEP_KERNEL_IMPLS(op, ...)                   \
  namespace detail {                                     \
  template <class T>                                     \
  using op##_signature = void(__VA_ARGS__);              \
  }                                                      \
  namespace cpu {                                        \
  template <class T>                                     \
  void op(__VA_ARGS__);                                  \
  }                                                      \
  namespace cuda {                                       \
  ::lockstep::kernels::detail::op##_signature<float> op; \
  }

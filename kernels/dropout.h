#pragma once
// Dropout with a counter-based mask: identical on CPU and CUDA, regenerated in the backward.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- Forward and backward over n elements:
//   keep_i = uniform01(philox_u32(seed, kDropoutStream, c + i)) >= p,  c = *base + offset
//   (base: one uint64 in ctx's memory, read when the kernel runs, so that a CUDA graph replayed
//   at a later step draws fresh numbers; null: c = offset; see Context::reserve_random_counters)
//   y_i = keep_i ? x_i / (1 − p) : 0;  backward: dx_i = keep_i ? dy_i / (1 − p) : 0.
//   p in [0, 1); p == 0 copies. y may alias x, dx may alias dy.
constexpr uint64_t kDropoutStream = 0xd709u;
LOCKSTEP_KERNEL_IMPLS(dropout_forward, const Context& ctx, int64_t n, float p, uint64_t seed,
                      const uint64_t* base, uint64_t offset, const T* x, T* y)
LOCKSTEP_KERNEL_IMPLS(dropout_backward, const Context& ctx, int64_t n, float p, uint64_t seed,
                      const uint64_t* base, uint64_t offset, const T* dy, T* dx)

namespace detail {
/// Sizes and p of dropout_forward / dropout_backward: p must be a probability in [0, 1).
inline void check_dropout(const char* op, int64_t n, float p) {
  check_size(op, "n", n);
  LOCKSTEP_CHECK(p >= 0.0f && p < 1.0f, "{}: p = {} is outside [0, 1)", op, p);
}
}  // namespace detail

template <class T>
void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, const uint64_t* base,
                     uint64_t offset, const T* x, T* y) {
  detail::check_dropout("dropout_forward", n, p);
  LOCKSTEP_DISPATCH(T, ctx, dropout_forward, n, p, seed, base, offset, x, y);
}
template <class T>
void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, const uint64_t* base,
                      uint64_t offset, const T* dy, T* dx) {
  detail::check_dropout("dropout_backward", n, p);
  LOCKSTEP_DISPATCH(T, ctx, dropout_backward, n, p, seed, base, offset, dy, dx);
}

}  // namespace lockstep::kernels

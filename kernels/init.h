#pragma once
// Parameter initialisation from the counter-based RNG (lockstep/core/philox.h).

#include "kernels/common.h"

namespace lockstep::kernels {

// x[i] = fma(hi - lo, u_i, lo) in float, u_i = uniform01(philox_u32(seed, stream, offset + i)).
// One correctly rounded fused multiply-add on both devices, so CPU and CUDA produce identical
// bits for the same (seed, stream, offset); for T = double the float value is widened.
// `stream` separates independent tensors (e.g. a hash of the parameter name).
LOCKSTEP_KERNEL_IMPLS(fill_uniform, const Context& ctx, int64_t n, uint64_t seed, uint64_t stream,
                      uint64_t offset, float lo, float hi, T* x)
LOCKSTEP_KERNEL_IMPLS(fill_constant, const Context& ctx, int64_t n, T value, T* x)
template <class T>
void fill_uniform(const Context& ctx, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                  float lo, float hi, T* x) {
  LOCKSTEP_DISPATCH(T, ctx, fill_uniform, n, seed, stream, offset, lo, hi, x);
}
template <class T>
void fill_constant(const Context& ctx, int64_t n, T value, T* x) {
  LOCKSTEP_DISPATCH(T, ctx, fill_constant, n, value, x);
}

}  // namespace lockstep::kernels

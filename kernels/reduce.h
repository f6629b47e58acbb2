#pragma once
// Deterministic reductions.

#include "kernels/common.h"

namespace lockstep::kernels {

// out[0] = sum of x[0..n) (0 when n == 0). `out` is one element on ctx's device. The summation
// order is fixed for a given n (sequential on the CPU, a fixed tree on CUDA), so repeated runs
// give identical bits; CPU and CUDA agree to rounding.
LOCKSTEP_KERNEL_IMPLS(sum, const Context& ctx, int64_t n, const T* x, T* out)
template <class T>
void sum(const Context& ctx, int64_t n, const T* x, T* out) {
  LOCKSTEP_DISPATCH(T, ctx, sum, n, x, out);
}

}  // namespace lockstep::kernels

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

// out[i] = ((x[i] + x[n + i]) + x[2n + i]) + ... + x[(blocks - 1)·n + i] for i < n: `blocks`
// consecutive blocks of n elements added in block order, each element on its own (the
// communicators' rank-ordered all-reduce: block r is rank r's contribution). Element-wise
// float adds in a fixed order, so CPU and CUDA give identical bits. `out` may be x itself
// (block 0); otherwise it must not overlap x.
LOCKSTEP_KERNEL_IMPLS(sum_blocks, const Context& ctx, int64_t n, int blocks, const T* x, T* out)
template <class T>
void sum_blocks(const Context& ctx, int64_t n, int blocks, const T* x, T* out) {
  detail::check_size("sum_blocks", "n", n);
  LOCKSTEP_CHECK(blocks >= 1, "sum_blocks: blocks = {} (at least 1)", blocks);
  LOCKSTEP_DISPATCH(T, ctx, sum_blocks, n, blocks, x, out);
}

}  // namespace lockstep::kernels

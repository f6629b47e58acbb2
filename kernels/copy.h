#pragma once
// Strided 2-D copies: place a (rows, cols) block into, or take it out of, a wider matrix
// (feature concatenation and its backward).

#include "kernels/common.h"

namespace lockstep::kernels {

// dst (rows, cols) with row stride ld_dst  <-  src (rows, cols) with row stride ld_src.
// If accumulate, dst += src instead.
LOCKSTEP_KERNEL_IMPLS(copy_2d, const Context& ctx, int64_t rows, int64_t cols, const T* src,
                      int64_t ld_src, T* dst, int64_t ld_dst, bool accumulate)
template <class T>
void copy_2d(const Context& ctx, int64_t rows, int64_t cols, const T* src, int64_t ld_src, T* dst,
             int64_t ld_dst, bool accumulate = false) {
  detail::check_size("copy_2d", "rows", rows);
  detail::check_size("copy_2d", "cols", cols);
  detail::check_ld("copy_2d", "ld_src", ld_src, "cols", cols);
  detail::check_ld("copy_2d", "ld_dst", ld_dst, "cols", cols);
  if (rows == 0 || cols == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, copy_2d, rows, cols, src, ld_src, dst, ld_dst, accumulate);
}

// y[i] = alpha * x[i] for n elements; y may alias x (in-place scaling).
LOCKSTEP_KERNEL_IMPLS(scale, const Context& ctx, int64_t n, T alpha, const T* x, T* y)
template <class T>
void scale(const Context& ctx, int64_t n, T alpha, const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, scale, n, alpha, x, y);
}

}  // namespace lockstep::kernels

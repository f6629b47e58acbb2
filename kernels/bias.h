#pragma once
// Bias add and bias gradient for (rows, cols) row-major activations.

#include "kernels/common.h"

namespace lockstep::kernels {

// y (rows, cols) += bias (cols), broadcast over rows.
LOCKSTEP_KERNEL_IMPLS(bias_add, const Context& ctx, int64_t rows, int64_t cols, const T* bias, T* y)
template <class T>
void bias_add(const Context& ctx, int64_t rows, int64_t cols, const T* bias, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, bias_add, rows, cols, bias, y);
}

// dbias (cols) += sum over rows of dy (rows, cols). Accumulates (does not overwrite) so that
// several consumers can add into one gradient. Fixed summation order: deterministic run-to-run.
LOCKSTEP_KERNEL_IMPLS(bias_grad, const Context& ctx, int64_t rows, int64_t cols, const T* dy,
                      T* dbias)
template <class T>
void bias_grad(const Context& ctx, int64_t rows, int64_t cols, const T* dy, T* dbias) {
  LOCKSTEP_DISPATCH(T, ctx, bias_grad, rows, cols, dy, dbias);
}

}  // namespace lockstep::kernels

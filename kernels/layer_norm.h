#pragma once
// Layer normalisation over the last dimension of (rows, n), forward and backward.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- Forward:
//   y = (x − mean) · rstd · gamma + beta,  rstd = 1 / sqrt(var + eps) (biased variance)
//   saves mean (rows) and rstd (rows) for the backward. y may alias x.
LOCKSTEP_KERNEL_IMPLS(layer_norm_forward, const Context& ctx, int64_t rows, int64_t n, T eps,
                      const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd)

// ---- Backward: dx (rows, n) overwrites (may alias dy); dgamma (n) +=, dbeta (n) +=.
LOCKSTEP_KERNEL_IMPLS(layer_norm_backward, const Context& ctx, int64_t rows, int64_t n, const T* x,
                      const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                      T* dbeta)

namespace detail {
inline void check_layer_norm_forward(int64_t rows, int64_t n) {
  constexpr const char* op = "layer_norm_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(n >= 1 || rows == 0, "{}: n = 0 but rows = {} (a row needs an element)", op, rows);
}
inline void check_layer_norm_backward(int64_t rows, int64_t n) {
  check_size("layer_norm_backward", "rows", rows);
  check_size("layer_norm_backward", "n", n);
}
}  // namespace detail

template <class T>
void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, T eps, const T* x,
                        const T* gamma, const T* beta, T* y, T* mean, T* rstd) {
  detail::check_layer_norm_forward(rows, n);
  LOCKSTEP_DISPATCH(T, ctx, layer_norm_forward, rows, n, eps, x, gamma, beta, y, mean, rstd);
}
template <class T>
void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const T* x, const T* gamma,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
  detail::check_layer_norm_backward(rows, n);
  LOCKSTEP_DISPATCH(T, ctx, layer_norm_backward, rows, n, x, gamma, mean, rstd, dy, dx, dgamma,
                    dbeta);
}

}  // namespace lockstep::kernels

#pragma once
// Feature-interaction kernels of the dual DNN's teacher: FM (second order, as a bi-interaction
// vector) and the DCN cross layer; and the squared-error loss used for distillation.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- FM bi-interaction (He & Chua, NFM 2017; the FM second-order term before the final sum):
//   out[b, d] = 0.5 · ((Σ_f v[b, f, d])² − Σ_f v[b, f, d]²)
//   v: (B, F, D) — field f of sample b at v + b·ldv + f·D (fields adjacent, row stride ldv);
//   out: (B, D) row stride ldo (overwritten). Summing out over d gives the FM second-order term.
// Backward: dv[b, f, d] += dout[b, d] · (Σ_f' v[b, f', d] − v[b, f, d])  (accumulates, stride
// lddv).
LOCKSTEP_KERNEL_IMPLS(fm_forward, const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v,
                      int64_t ldv, T* out, int64_t ldo)
LOCKSTEP_KERNEL_IMPLS(fm_backward, const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v,
                      int64_t ldv, const T* dout, int64_t lddo, T* dv, int64_t lddv)
namespace detail {
/// Sizes of fm_forward / fm_backward, and the stride of v: one sample's F·D field values.
inline void check_fm(const char* op, int64_t B, int64_t F, int64_t D, int64_t ldv) {
  check_size(op, "B", B);
  check_size(op, "F", F);
  check_size(op, "D", D);
  check_ld(op, "ldv", ldv, "F*D", F * D);
}
inline void check_fm_forward(int64_t B, int64_t F, int64_t D, int64_t ldv, int64_t ldo) {
  check_fm("fm_forward", B, F, D, ldv);
  check_ld("fm_forward", "ldo", ldo, "D", D);
}
inline void check_fm_backward(int64_t B, int64_t F, int64_t D, int64_t ldv, int64_t lddo,
                              int64_t lddv) {
  constexpr const char* op = "fm_backward";
  check_fm(op, B, F, D, ldv);
  check_ld(op, "lddo", lddo, "D", D);
  check_ld(op, "lddv", lddv, "F*D", F * D);
}
}  // namespace detail
template <class T>
void fm_forward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                T* out, int64_t ldo) {
  detail::check_fm_forward(B, F, D, ldv, ldo);
  LOCKSTEP_DISPATCH(T, ctx, fm_forward, B, F, D, v, ldv, out, ldo);
}
template <class T>
void fm_backward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                 const T* dout, int64_t lddo, T* dv, int64_t lddv) {
  detail::check_fm_backward(B, F, D, ldv, lddo, lddv);
  LOCKSTEP_DISPATCH(T, ctx, fm_backward, B, F, D, v, ldv, dout, lddo, dv, lddv);
}

// ---- DCN cross layer (Wang et al. 2017): x_{l+1} = x0 · (x_l · w) + b + x_l, per row.
//   x0, xl, y: (B, n) contiguous; w, b: (n); s: (B) out, s[b] = x_l[b] · w (saved for backward).
// Backward with dy (B, n):
//   ds[b] = dy[b] · x0[b];  dxl = dy + ds[b] · w (OVERWRITES dxl; may alias dy);
//   dx0 += dy · s[b] (accumulates: every layer adds to the gradient of x0);
//   dw += Σ_b ds[b] · xl[b];  db += Σ_b dy[b]   (accumulate; fixed-order sums).
LOCKSTEP_KERNEL_IMPLS(cross_forward, const Context& ctx, int64_t B, int64_t n, const T* x0,
                      const T* xl, const T* w, const T* b, T* y, T* s)
LOCKSTEP_KERNEL_IMPLS(cross_backward, const Context& ctx, int64_t B, int64_t n, const T* x0,
                      const T* xl, const T* w, const T* s, const T* dy, T* dx0, T* dxl, T* dw,
                      T* db)
namespace detail {
/// Sizes of cross_forward / cross_backward (all operands are contiguous).
inline void check_cross(const char* op, int64_t B, int64_t n) {
  check_size(op, "B", B);
  check_size(op, "n", n);
}
}  // namespace detail
template <class T>
void cross_forward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                   const T* b, T* y, T* s) {
  detail::check_cross("cross_forward", B, n);
  LOCKSTEP_DISPATCH(T, ctx, cross_forward, B, n, x0, xl, w, b, y, s);
}
template <class T>
void cross_backward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                    const T* s, const T* dy, T* dx0, T* dxl, T* dw, T* db) {
  detail::check_cross("cross_backward", B, n);
  LOCKSTEP_DISPATCH(T, ctx, cross_backward, B, n, x0, xl, w, s, dy, dx0, dxl, dw, db);
}

// ---- Squared error between rows of two matrices (distillation losses):
//   loss[i] = 0.5 · Σ_j (a[i, j] − t[i, j])²   for i < rows, j < n; a row stride lda, t ldt;
//   da[i, j] = grad_scale · (a[i, j] − t[i, j])  (overwrites, row stride ldda; may be nullptr);
//   loss may be nullptr. t is a target: it gets no gradient (stop_grad).
LOCKSTEP_KERNEL_IMPLS(squared_error, const Context& ctx, int64_t rows, int64_t n, const T* a,
                      int64_t lda, const T* t, int64_t ldt, T grad_scale, T* loss, T* da,
                      int64_t ldda)
namespace detail {
/// Sizes and strides of squared_error; ldda only matters when da is written.
inline void check_squared_error(int64_t rows, int64_t n, int64_t lda, int64_t ldt, bool has_da,
                                int64_t ldda) {
  constexpr const char* op = "squared_error";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  check_ld(op, "lda", lda, "n", n);
  check_ld(op, "ldt", ldt, "n", n);
  if (has_da) check_ld(op, "ldda", ldda, "n", n);
}
}  // namespace detail
template <class T>
void squared_error(const Context& ctx, int64_t rows, int64_t n, const T* a, int64_t lda, const T* t,
                   int64_t ldt, T grad_scale, T* loss, T* da, int64_t ldda) {
  detail::check_squared_error(rows, n, lda, ldt, da != nullptr, ldda);
  LOCKSTEP_DISPATCH(T, ctx, squared_error, rows, n, a, lda, t, ldt, grad_scale, loss, da, ldda);
}

}  // namespace lockstep::kernels

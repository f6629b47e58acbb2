#pragma once
// Feature-interaction kernels of the dual DNN's teacher: FM (second order, as a bi-interaction
// vector) and the DCN cross layer; and the squared-error loss used for distillation.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- FM bi-interaction (He & Chua, NFM 2017; the FM second-order term before the final sum):
//   out[b, d] = 0.5 · ((Σ_f v[b, f, d])² − Σ_f v[b, f, d]²)
//   v: (B, F, D) — field f of sample b at v + b·ldv + f·D (fields adjacent, row stride ldv);
//   out: (B, D) row stride ldo (overwritten). Summing out over d gives the FM second-order term.
// Backward: dv[b, f, d] += dout[b, d] · (Σ_f' v[b, f', d] − v[b, f, d])  (accumulates, stride lddv).
namespace cpu {
template <class T>
void fm_forward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                T* out, int64_t ldo);
template <class T>
void fm_backward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                 const T* dout, int64_t lddo, T* dv, int64_t lddv);
}  // namespace cpu
namespace cuda {
void fm_forward(const Context& ctx, int64_t B, int64_t F, int64_t D, const float* v, int64_t ldv,
                float* out, int64_t ldo);
void fm_backward(const Context& ctx, int64_t B, int64_t F, int64_t D, const float* v, int64_t ldv,
                 const float* dout, int64_t lddo, float* dv, int64_t lddv);
}  // namespace cuda
template <class T>
void fm_forward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                T* out, int64_t ldo) {
  LOCKSTEP_DISPATCH(T, ctx, fm_forward, B, F, D, v, ldv, out, ldo);
}
template <class T>
void fm_backward(const Context& ctx, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                 const T* dout, int64_t lddo, T* dv, int64_t lddv) {
  LOCKSTEP_DISPATCH(T, ctx, fm_backward, B, F, D, v, ldv, dout, lddo, dv, lddv);
}

// ---- DCN cross layer (Wang et al. 2017): x_{l+1} = x0 · (x_l · w) + b + x_l, per row.
//   x0, xl, y: (B, n) contiguous; w, b: (n); s: (B) out, s[b] = x_l[b] · w (saved for backward).
// Backward with dy (B, n):
//   ds[b] = dy[b] · x0[b];  dxl = dy + ds[b] · w (OVERWRITES dxl; may alias dy);
//   dx0 += dy · s[b] (accumulates: every layer adds to the gradient of x0);
//   dw += Σ_b ds[b] · xl[b];  db += Σ_b dy[b]   (accumulate; fixed-order sums).
namespace cpu {
template <class T>
void cross_forward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                   const T* b, T* y, T* s);
template <class T>
void cross_backward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl,
                    const T* w, const T* s, const T* dy, T* dx0, T* dxl, T* dw, T* db);
}  // namespace cpu
namespace cuda {
void cross_forward(const Context& ctx, int64_t B, int64_t n, const float* x0, const float* xl,
                   const float* w, const float* b, float* y, float* s);
void cross_backward(const Context& ctx, int64_t B, int64_t n, const float* x0, const float* xl,
                    const float* w, const float* s, const float* dy, float* dx0, float* dxl,
                    float* dw, float* db);
}  // namespace cuda
template <class T>
void cross_forward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                   const T* b, T* y, T* s) {
  LOCKSTEP_DISPATCH(T, ctx, cross_forward, B, n, x0, xl, w, b, y, s);
}
template <class T>
void cross_backward(const Context& ctx, int64_t B, int64_t n, const T* x0, const T* xl,
                    const T* w, const T* s, const T* dy, T* dx0, T* dxl, T* dw, T* db) {
  LOCKSTEP_DISPATCH(T, ctx, cross_backward, B, n, x0, xl, w, s, dy, dx0, dxl, dw, db);
}

// ---- Squared error between rows of two matrices (distillation losses):
//   loss[i] = 0.5 · Σ_j (a[i, j] − t[i, j])²   for i < rows, j < n; a row stride lda, t ldt;
//   da[i, j] = grad_scale · (a[i, j] − t[i, j])  (overwrites, row stride ldda; may be nullptr);
//   loss may be nullptr. t is a target: it gets no gradient (stop_grad).
namespace cpu {
template <class T>
void squared_error(const Context& ctx, int64_t rows, int64_t n, const T* a, int64_t lda,
                   const T* t, int64_t ldt, T grad_scale, T* loss, T* da, int64_t ldda);
}
namespace cuda {
void squared_error(const Context& ctx, int64_t rows, int64_t n, const float* a, int64_t lda,
                   const float* t, int64_t ldt, float grad_scale, float* loss, float* da,
                   int64_t ldda);
}
template <class T>
void squared_error(const Context& ctx, int64_t rows, int64_t n, const T* a, int64_t lda,
                   const T* t, int64_t ldt, T grad_scale, T* loss, T* da, int64_t ldda) {
  LOCKSTEP_DISPATCH(T, ctx, squared_error, rows, n, a, lda, t, ldt, grad_scale, loss, da, ldda);
}

}  // namespace lockstep::kernels

#pragma once
// Kernels of the behaviour-sequence models (DIN target attention, BST self-attention).
//
// Sequences are (B, T, W) row-major with a row stride `ld` per position (ld >= W), so that a
// field can live in its column slice of a wider matrix. `lengths` (int64, on ctx's device) give
// the valid positions of each sample: positions t < lengths[b] are real, the rest padding.
// Gradients of parameters and of inputs that several consumers share ACCUMULATE (+=) where the
// comment says so; everything else overwrites.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- DIN local activation unit, first layer, without materialising (B, T, 4D):
//   h[b, t, :] = [q_b, k_bt, q_b − k_bt, q_b ⊙ k_bt] · W + bias
//   q: (B, D) row stride ldq (the target); k: (B, T, D) row stride ldk (the history);
//   W: (4D, H) row-major (rows 0..D-1 multiply q, D..2D-1 k, 2D..3D-1 q−k, 3D..4D-1 q⊙k);
//   bias: (H); h: (B*T, H) contiguous. Every position is computed, padding included.
// Implementations may use the identity [q,k,q−k,q⊙k]·W = q·(W_q+W_d) + k·(W_k−W_d) + (q⊙k)·W_p.
namespace cpu {
template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h);
// Given dh (B*T, H): dW (4D, H) +=, dbias (H) +=, dq (B, D) row stride lddq +=,
// dk (B, T, D) row stride lddk +=. dq or dk may be nullptr (no gradient wanted).
template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk);
}  // namespace cpu
namespace cuda {
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                      const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                      const float* bias, float* h);
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                       const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                       const float* dh, float* dW, float* dbias, float* dq, int64_t lddq,
                       float* dk, int64_t lddk);
}  // namespace cuda
template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h) {
  LOCKSTEP_DISPATCH(T, ctx, din_unit_forward, B, Tn, D, H, q, ldq, k, ldk, W, bias, h);
}
template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk) {
  LOCKSTEP_DISPATCH(T, ctx, din_unit_backward, B, Tn, D, H, q, ldq, k, ldk, W, dh, dW, dbias, dq,
                    lddq, dk, lddk);
}

// ---- Masked weighted sum over positions (DIN pooling, BST mean/target read-out):
//   out[b, :] = Σ_{t < lengths[b]} w[b, t] · x[b, t, :]         out: (B, D) row stride ldo
//   w: (B, T) contiguous; x: (B, T, D) row stride ldx. lengths[b] = 0 gives a zero row.
// Backward: dw[b, t] = dout[b] · x[b, t] for t < lengths[b], 0 otherwise (overwrites dw);
//           dx[b, t, :] += w[b, t] · dout[b] for t < lengths[b] (accumulates; dx may be nullptr).
namespace cpu {
template <class T>
void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const T* w, const T* x, int64_t ldx, T* out,
                          int64_t ldo);
template <class T>
void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const T* w, const T* x, int64_t ldx,
                           const T* dout, int64_t lddo, T* dw, T* dx, int64_t lddx);
}  // namespace cpu
namespace cuda {
void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                          float* out, int64_t ldo);
void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                           const float* dout, int64_t lddo, float* dw, float* dx, int64_t lddx);
}  // namespace cuda
template <class T>
void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const T* w, const T* x, int64_t ldx, T* out,
                          int64_t ldo) {
  LOCKSTEP_DISPATCH(T, ctx, weighted_sum_forward, B, Tn, D, lengths, w, x, ldx, out, ldo);
}
template <class T>
void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const T* w, const T* x, int64_t ldx,
                           const T* dout, int64_t lddo, T* dw, T* dx, int64_t lddx) {
  LOCKSTEP_DISPATCH(T, ctx, weighted_sum_backward, B, Tn, D, lengths, w, x, ldx, dout, lddo, dw,
                    dx, lddx);
}

// ---- Masked softmax over the last dimension of (rows, n), in place allowed (y may alias x):
//   row r belongs to sample r / group; valid entries are j < lengths[r / group]:
//   y[r, j] = exp(x[r, j] − max) / Σ_valid exp(x[r, i] − max) for valid j, 0 otherwise;
//   a row with no valid entry is all zeros (no NaN, no sentinel values).
// Backward: dx[r, j] = y[r, j] · (dy[r, j] − Σ_i y[r, i] dy[r, i]) (0 where y is 0); dx may alias dy.
namespace cpu {
template <class T>
void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const T* x, T* y);
template <class T>
void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const T* y, const T* dy,
                             T* dx);
}  // namespace cpu
namespace cuda {
void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const float* x, float* y);
void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const float* y,
                             const float* dy, float* dx);
}  // namespace cuda
template <class T>
void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, masked_softmax_forward, rows, n, group, lengths, x, y);
}
template <class T>
void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const T* y, const T* dy,
                             T* dx) {
  LOCKSTEP_DISPATCH(T, ctx, masked_softmax_backward, rows, n, y, dy, dx);
}

// ---- Zero the padding positions of a sequence in place: x[b, t, 0:W] = 0 for t >= lengths[b].
//   x: (B, T, W) row stride ld. (Its backward is the same call on the gradient.)
namespace cpu {
template <class T>
void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    T* x, int64_t ld);
}
namespace cuda {
void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    float* x, int64_t ld);
}
template <class T>
void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    T* x, int64_t ld) {
  LOCKSTEP_DISPATCH(T, ctx, mask_positions, B, Tn, W, lengths, x, ld);
}

// ---- Layer normalisation over the last dimension of (rows, n):
//   y = (x − mean) · rstd · gamma + beta,  rstd = 1 / sqrt(var + eps) (biased variance)
//   saves mean (rows) and rstd (rows) for the backward.
// Backward: dx (rows, n) overwrites (may alias dy); dgamma (n) +=, dbeta (n) +=.
namespace cpu {
template <class T>
void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, T eps, const T* x,
                        const T* gamma, const T* beta, T* y, T* mean, T* rstd);
template <class T>
void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const T* x, const T* gamma,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta);
}  // namespace cpu
namespace cuda {
void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, float eps, const float* x,
                        const float* gamma, const float* beta, float* y, float* mean, float* rstd);
void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const float* x,
                         const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta);
}  // namespace cuda
template <class T>
void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, T eps, const T* x,
                        const T* gamma, const T* beta, T* y, T* mean, T* rstd) {
  LOCKSTEP_DISPATCH(T, ctx, layer_norm_forward, rows, n, eps, x, gamma, beta, y, mean, rstd);
}
template <class T>
void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const T* x, const T* gamma,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
  LOCKSTEP_DISPATCH(T, ctx, layer_norm_backward, rows, n, x, gamma, mean, rstd, dy, dx, dgamma,
                    dbeta);
}

// ---- Dropout with a counter-based mask (identical on CPU and CUDA, regenerated in backward):
//   keep_i = uniform01(philox_u32(seed, kDropoutStream, offset + i)) >= p
//   y_i = keep_i ? x_i / (1 − p) : 0;  backward: dx_i = keep_i ? dy_i / (1 − p) : 0.
//   p in [0, 1); p == 0 copies. y may alias x, dx may alias dy.
constexpr uint64_t kDropoutStream = 0xd709u;
namespace cpu {
template <class T>
void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                     const T* x, T* y);
template <class T>
void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                      const T* dy, T* dx);
}  // namespace cpu
namespace cuda {
void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                     const float* x, float* y);
void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                      const float* dy, float* dx);
}  // namespace cuda
template <class T>
void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                     const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, dropout_forward, n, p, seed, offset, x, y);
}
template <class T>
void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                      const T* dy, T* dx) {
  LOCKSTEP_DISPATCH(T, ctx, dropout_backward, n, p, seed, offset, dy, dx);
}

}  // namespace lockstep::kernels

#pragma once
// Masked weighted sum over the positions of a sequence (DIN pooling, BST mean/target read-out).
//
// Sequences are (B, T, D) row-major with a row stride per position (>= D). `lengths` (int64, on
// ctx's device) give the valid positions of each sample: t < lengths[b] are real, the rest
// padding. The CPU reference throws on lengths outside [0, T]; the CUDA kernels clamp them.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- Forward:
//   out[b, :] = Σ_{t < lengths[b]} w[b, t] · x[b, t, :]         out: (B, D) row stride ldo
//   w: (B, T) contiguous; x: (B, T, D) row stride ldx. lengths[b] = 0 gives a zero row.
LOCKSTEP_KERNEL_IMPLS(weighted_sum_forward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      const int64_t* lengths, const T* w, const T* x, int64_t ldx, T* out,
                      int64_t ldo)

// ---- Backward: dw[b, t] = dout[b] · x[b, t] for t < lengths[b], 0 otherwise (overwrites dw);
//   dx[b, t, :] += w[b, t] · dout[b] for t < lengths[b] (accumulates; dx may be nullptr).
//   dout: (B, D) row stride lddo; dx: row stride lddx.
LOCKSTEP_KERNEL_IMPLS(weighted_sum_backward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      const int64_t* lengths, const T* w, const T* x, int64_t ldx, const T* dout,
                      int64_t lddo, T* dw, T* dx, int64_t lddx)

namespace detail {
inline void check_weighted_sum_forward(int64_t B, int64_t Tn, int64_t D, int64_t ldx, int64_t ldo) {
  constexpr const char* op = "weighted_sum_forward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "ldo", ldo, "D", D);
}
inline void check_weighted_sum_backward(int64_t B, int64_t Tn, int64_t D, int64_t ldx, int64_t lddo,
                                        bool has_dx, int64_t lddx) {
  constexpr const char* op = "weighted_sum_backward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "lddo", lddo, "D", D);
  if (has_dx) check_ld(op, "lddx", lddx, "D", D);
}
}  // namespace detail

template <class T>
void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const T* w, const T* x, int64_t ldx, T* out,
                          int64_t ldo) {
  detail::check_weighted_sum_forward(B, Tn, D, ldx, ldo);
  LOCKSTEP_DISPATCH(T, ctx, weighted_sum_forward, B, Tn, D, lengths, w, x, ldx, out, ldo);
}
template <class T>
void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const T* w, const T* x, int64_t ldx,
                           const T* dout, int64_t lddo, T* dw, T* dx, int64_t lddx) {
  detail::check_weighted_sum_backward(B, Tn, D, ldx, lddo, dx != nullptr, lddx);
  LOCKSTEP_DISPATCH(T, ctx, weighted_sum_backward, B, Tn, D, lengths, w, x, ldx, dout, lddo, dw, dx,
                    lddx);
}

}  // namespace lockstep::kernels

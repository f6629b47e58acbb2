#pragma once
// Softmax over padded sequences: the masked softmax (attention weights) and the padding mask.
//
// `lengths` (int64, on ctx's device) give the valid entries of each sample. The CPU reference
// throws on lengths outside their range; the CUDA kernels clamp them, so that a bad length can
// never read or write out of bounds.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- Masked softmax over the last dimension of (rows, n), in place allowed (y may alias x):
//   row r belongs to sample r / group; valid entries are j < lengths[r / group]:
//   y[r, j] = exp(x[r, j] − max) / Σ_valid exp(x[r, i] − max) for valid j, 0 otherwise;
//   a row with no valid entry is all zeros (no NaN, no sentinel values).
//   lengths: (ceil(rows / group)); rows need not be a multiple of group.
LOCKSTEP_KERNEL_IMPLS(masked_softmax_forward, const Context& ctx, int64_t rows, int64_t n,
                      int64_t group, const int64_t* lengths, const T* x, T* y)

// Backward: dx[r, j] = y[r, j] · (dy[r, j] − Σ_i y[r, i] dy[r, i]) (0 where y is 0); dx may alias
// dy.
LOCKSTEP_KERNEL_IMPLS(masked_softmax_backward, const Context& ctx, int64_t rows, int64_t n,
                      const T* y, const T* dy, T* dx)

// ---- Zero the padding positions of a sequence in place: x[b, t, 0:W] = 0 for t >= lengths[b].
//   x: (B, T, W) row stride ld. (Its backward is the same call on the gradient.)
LOCKSTEP_KERNEL_IMPLS(mask_positions, const Context& ctx, int64_t B, int64_t Tn, int64_t W,
                      const int64_t* lengths, T* x, int64_t ld)

namespace detail {
/// Samples of a masked softmax over `rows` rows, `group` consecutive rows per sample.
inline int64_t softmax_samples(int64_t rows, int64_t group) {
  return rows <= 0 ? 0 : (rows + group - 1) / group;
}
inline void check_masked_softmax_forward(int64_t rows, int64_t n, int64_t group) {
  constexpr const char* op = "masked_softmax_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(group >= 1, "{}: group = {} must be >= 1", op, group);
}
inline void check_masked_softmax_backward(int64_t rows, int64_t n) {
  check_size("masked_softmax_backward", "rows", rows);
  check_size("masked_softmax_backward", "n", n);
}
inline void check_mask_positions(int64_t B, int64_t Tn, int64_t W, int64_t ld) {
  constexpr const char* op = "mask_positions";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "W", W);
  check_ld(op, "ld", ld, "W", W);
}
}  // namespace detail

template <class T>
void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const T* x, T* y) {
  detail::check_masked_softmax_forward(rows, n, group);
  LOCKSTEP_DISPATCH(T, ctx, masked_softmax_forward, rows, n, group, lengths, x, y);
}
template <class T>
void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const T* y, const T* dy,
                             T* dx) {
  detail::check_masked_softmax_backward(rows, n);
  LOCKSTEP_DISPATCH(T, ctx, masked_softmax_backward, rows, n, y, dy, dx);
}
template <class T>
void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    T* x, int64_t ld) {
  detail::check_mask_positions(B, Tn, W, ld);
  LOCKSTEP_DISPATCH(T, ctx, mask_positions, B, Tn, W, lengths, x, ld);
}

}  // namespace lockstep::kernels

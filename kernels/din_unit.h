#pragma once
// DIN local activation unit (Zhou et al., DIN, 2018), first layer, forward and backward.
//
// Sequences are (B, T, W) row-major with a row stride `ld` per position (ld >= W), so that a
// field can live in its column slice of a wider matrix. Parameter gradients and gradients of
// inputs ACCUMULATE (+=); h overwrites.

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- Forward, without materialising (B, T, 4D):
//   h[b, t, :] = [q_b, k_bt, q_b − k_bt, q_b ⊙ k_bt] · W + bias
//   q: (B, D) row stride ldq (the target); k: (B, T, D) row stride ldk (the history);
//   W: (4D, H) row-major (rows 0..D-1 multiply q, D..2D-1 k, 2D..3D-1 q−k, 3D..4D-1 q⊙k);
//   bias: (H); h: (B*T, H) contiguous. Every position is computed, padding included.
// Implementations may use the identity [q,k,q−k,q⊙k]·W = q·(W_q+W_d) + k·(W_k−W_d) + (q⊙k)·W_p.
LOCKSTEP_KERNEL_IMPLS(din_unit_forward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      int64_t H, const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                      const T* bias, T* h)

// ---- Backward. Given dh (B*T, H): dW (4D, H) +=, dbias (H) +=, dq (B, D) row stride lddq +=,
// dk (B, T, D) row stride lddk +=. dq or dk may be nullptr (no gradient wanted).
LOCKSTEP_KERNEL_IMPLS(din_unit_backward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      int64_t H, const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                      const T* dh, T* dW, T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk)

// ---- The unit with its PReLU fused (DinAttention's default activation, kernels/activation.h):
// the forward writes h as din_unit_forward and a = PReLU(h) with per-column slopes alpha (H);
// the backward starts from da = dL/da and the forward's h: dh = da ⊙ PReLU'(h), dalpha (H) +=
// Σ da ⊙ (h > 0 ? 0 : h), then as din_unit_backward. h and a bitwise equal the two kernels in
// turn; dW, dbias, dq, dk too, dalpha up to its sum's order. `da` is scratch: on return it is
// either unchanged (CPU) or holds dh (the CUDA backward runs prelu_backward over it in place,
// then the unit's backward).
LOCKSTEP_KERNEL_IMPLS(din_unit_prelu_forward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      int64_t H, const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                      const T* bias, const T* alpha, T* h, T* a)
LOCKSTEP_KERNEL_IMPLS(din_unit_prelu_backward, const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                      int64_t H, const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                      const T* h, const T* alpha, T* da, T* dW, T* dbias, T* dalpha, T* dq,
                      int64_t lddq, T* dk, int64_t lddk)

namespace detail {
/// The size and stride checks of din_unit_forward / din_unit_backward.
inline void check_din_unit(const char* op, int64_t B, int64_t Tn, int64_t D, int64_t H, int64_t ldq,
                           int64_t ldk) {
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_size(op, "H", H);
  check_ld(op, "ldq", ldq, "D", D);
  check_ld(op, "ldk", ldk, "D", D);
}
inline void check_din_unit_backward(int64_t B, int64_t Tn, int64_t D, int64_t H, int64_t ldq,
                                    int64_t ldk, bool has_dq, int64_t lddq, bool has_dk,
                                    int64_t lddk, const char* op = "din_unit_backward") {
  check_din_unit(op, B, Tn, D, H, ldq, ldk);
  if (has_dq) check_ld(op, "lddq", lddq, "D", D);
  if (has_dk) check_ld(op, "lddk", lddk, "D", D);
}
}  // namespace detail

template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h) {
  detail::check_din_unit("din_unit_forward", B, Tn, D, H, ldq, ldk);
  LOCKSTEP_DISPATCH(T, ctx, din_unit_forward, B, Tn, D, H, q, ldq, k, ldk, W, bias, h);
}
template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk) {
  detail::check_din_unit_backward(B, Tn, D, H, ldq, ldk, dq != nullptr, lddq, dk != nullptr, lddk);
  LOCKSTEP_DISPATCH(T, ctx, din_unit_backward, B, Tn, D, H, q, ldq, k, ldk, W, dh, dW, dbias, dq,
                    lddq, dk, lddk);
}

template <class T>
void din_unit_prelu_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                            const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                            const T* bias, const T* alpha, T* h, T* a) {
  detail::check_din_unit("din_unit_prelu_forward", B, Tn, D, H, ldq, ldk);
  LOCKSTEP_DISPATCH(T, ctx, din_unit_prelu_forward, B, Tn, D, H, q, ldq, k, ldk, W, bias, alpha, h,
                    a);
}
template <class T>
void din_unit_prelu_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                             const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                             const T* h, const T* alpha, T* da, T* dW, T* dbias, T* dalpha, T* dq,
                             int64_t lddq, T* dk, int64_t lddk) {
  detail::check_din_unit_backward(B, Tn, D, H, ldq, ldk, dq != nullptr, lddq, dk != nullptr, lddk,
                                  "din_unit_prelu_backward");
  LOCKSTEP_DISPATCH(T, ctx, din_unit_prelu_backward, B, Tn, D, H, q, ldq, k, ldk, W, h, alpha, da,
                    dW, dbias, dalpha, dq, lddq, dk, lddk);
}

}  // namespace lockstep::kernels

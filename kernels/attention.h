#pragma once
// Multi-head self-attention over padded sequences (the BST transformer's core), one kernel per
// direction instead of a tiny GEMM per head and sample.
//
// Layout: qkv is (B·L, 3d) with d = heads · dh, each row [Q | K | V]; head i uses columns
// [i·dh, (i+1)·dh) of each part. Sample b's rows are b·L .. b·L + L − 1 and its valid positions
// t < lengths[b]. For sample b, head i and query position q (every q < L, padding included, as
// the padded GEMM + masked-softmax formulation computes them):
//   P[b,i,q,k] = softmax_k(scale · Q[q]·K[k]) over the valid keys k < len_b, 0 for k ≥ len_b
//                (a sample with no valid key has P = 0),
//   O[b·L + q, i·dh + c] = Σ_k P[b,i,q,k] · V[k, c].
// probs (B·heads·L, L): row (b·heads + i)·L + q holds P[b,i,q,:] (kept for the backward).
//
// Orders (the same in the CPU reference and the CUDA kernel): a score is its dh products summed
// in c order, then scaled; the softmax subtracts the row's maximum, exponentiates and divides by
// the sum over the valid k in ascending order (masked_softmax_forward's formula, kernels/softmax.h,
// not its CUDA kernel's lane-strided order); O and every gradient entry sum over the valid k (or
// every q) in ascending order, then scale. The CPU reference sums the softmax's normaliser and the
// backward's Σ P·dP in double, as masked_softmax does; CUDA in float. So CPU and CUDA agree to
// float rounding here, not bitwise.
//
// `lengths` (int64, ctx's device): the CPU reference throws on a length outside [0, L]; the CUDA
// kernels clamp it.

#include "kernels/common.h"

namespace lockstep::kernels {

LOCKSTEP_KERNEL_IMPLS(attention_forward, const Context& ctx, int64_t B, int64_t L, int64_t heads,
                      int64_t dh, T scale, const int64_t* lengths, const T* qkv, T* probs, T* out)

// Backward from dout (B·L, d), the forward's probs and the same lengths: dqkv (B·L, 3d) is
// overwritten with
//   dS = P ⊙ (dP − Σ_k P·dP), dP[q,k] = dO[q]·V[k]   (0 where P is 0: masked keys; the dot
//        over the entries where P is not 0),
//   dQ[q] = scale · Σ_k dS[q,k] K[k],  dK[k] = scale · Σ_q dS[q,k] Q[q],  dV[k] = Σ_q P[q,k] dO[q];
// ds (B·heads·L, L) receives dS (scratch the caller owns; probs' layout).
LOCKSTEP_KERNEL_IMPLS(attention_backward, const Context& ctx, int64_t B, int64_t L, int64_t heads,
                      int64_t dh, T scale, const int64_t* lengths, const T* qkv, const T* probs,
                      const T* dout, T* ds, T* dqkv)

namespace detail {
inline void check_attention(const char* op, int64_t B, int64_t L, int64_t heads, int64_t dh) {
  check_size(op, "B", B);
  check_size(op, "L", L);
  LOCKSTEP_CHECK(heads >= 1, "{}: heads = {} must be >= 1", op, heads);
  LOCKSTEP_CHECK(dh >= 1, "{}: dh = {} must be >= 1", op, dh);
}
}  // namespace detail

template <class T>
void attention_forward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh, T scale,
                       const int64_t* lengths, const T* qkv, T* probs, T* out) {
  detail::check_attention("attention_forward", B, L, heads, dh);
  LOCKSTEP_DISPATCH(T, ctx, attention_forward, B, L, heads, dh, scale, lengths, qkv, probs, out);
}

template <class T>
void attention_backward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                        T scale, const int64_t* lengths, const T* qkv, const T* probs,
                        const T* dout, T* ds, T* dqkv) {
  detail::check_attention("attention_backward", B, L, heads, dh);
  LOCKSTEP_DISPATCH(T, ctx, attention_backward, B, L, heads, dh, scale, lengths, qkv, probs, dout,
                    ds, dqkv);
}

}  // namespace lockstep::kernels

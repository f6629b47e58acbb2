// CUDA multi-head attention core (kernels/attention.h), float.
//
// One thread per (sample, head, query row) for the forward and for dP/dS/dQ; one thread per
// (sample, head, key row) for dK and dV, so that every output entry is written by one thread
// that sums in the header's order (no atomics: run-to-run bitwise). `lengths` are clamped to
// [0, L]. Sizes are validated by the dispatcher.

#include <cmath>

#include "kernels/attention.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lengths.cuh"

namespace lockstep::kernels::cuda {

namespace {

// Row r of the (B, heads, L) rows these kernels take one per thread: position t (a query, or a
// key for dK/dV) of head i of sample b.
struct HeadRow {
  int64_t t, i, b;
};
__device__ __forceinline__ HeadRow head_row(int64_t r, int64_t L, int64_t heads) {
  const int64_t bi = r / L;
  return {r % L, bi % heads, bi / heads};
}

__global__ void attention_forward_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                         float scale, const int64_t* __restrict__ lengths,
                                         const float* __restrict__ qkv, float* __restrict__ probs,
                                         float* __restrict__ out) {
  const int64_t d = heads * dh, ld = 3 * d, n = B * heads * L;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n;
       r += int64_t(gridDim.x) * blockDim.x) {
    const auto [q, i, b] = head_row(r, L, heads);
    const int64_t len = clamp_length(lengths[b], L);
    const float* rows = qkv + b * L * ld;
    float* p = probs + r * L;
    float* o = out + (b * L + q) * d + i * dh;
    const float* qr = rows + q * ld + i * dh;
    float max = 0.f;
    for (int64_t k = 0; k < len; ++k) {
      const float* kr = rows + k * ld + d + i * dh;
      float s = 0.f;
      for (int64_t c = 0; c < dh; ++c) s = __fadd_rn(s, __fmul_rn(qr[c], kr[c]));
      s = __fmul_rn(s, scale);
      p[k] = s;
      max = k == 0 ? s : fmaxf(max, s);
    }
    float sum = 0.f;
    for (int64_t k = 0; k < len; ++k) {
      const float e = expf(p[k] - max);
      p[k] = e;
      sum = __fadd_rn(sum, e);
    }
    const float inv = len > 0 ? __fdiv_rn(1.f, sum) : 0.f;
    for (int64_t c = 0; c < dh; ++c) o[c] = 0.f;
    for (int64_t k = 0; k < len; ++k) {
      const float pk = __fmul_rn(p[k], inv);
      p[k] = pk;
      const float* vr = rows + k * ld + 2 * d + i * dh;
      for (int64_t c = 0; c < dh; ++c) o[c] = __fadd_rn(o[c], __fmul_rn(pk, vr[c]));
    }
    for (int64_t k = len; k < L; ++k) p[k] = 0.f;
  }
}

// dS row and dQ of one (sample, head, query).
__global__ void attention_backward_query_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                                float scale, const int64_t* __restrict__ lengths,
                                                const float* __restrict__ qkv,
                                                const float* __restrict__ probs,
                                                const float* __restrict__ dout,
                                                float* __restrict__ ds, float* __restrict__ dqkv) {
  const int64_t d = heads * dh, ld = 3 * d, n = B * heads * L;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n;
       r += int64_t(gridDim.x) * blockDim.x) {
    const auto [q, i, b] = head_row(r, L, heads);
    const int64_t len = clamp_length(lengths[b], L);
    const float* rows = qkv + b * L * ld;
    const float* p = probs + r * L;
    float* g = ds + r * L;
    const float* go = dout + (b * L + q) * d + i * dh;
    float dot = 0.f;
    for (int64_t k = 0; k < len; ++k) {
      const float* vr = rows + k * ld + 2 * d + i * dh;
      float dp = 0.f;
      for (int64_t c = 0; c < dh; ++c) dp = __fadd_rn(dp, __fmul_rn(go[c], vr[c]));
      g[k] = dp;
      if (p[k] != 0.f) dot = __fadd_rn(dot, __fmul_rn(p[k], dp));
    }
    for (int64_t k = 0; k < L; ++k) {
      const float pk = k < len ? p[k] : 0.f;
      g[k] = pk != 0.f ? __fmul_rn(pk, __fsub_rn(g[k], dot)) : 0.f;
    }
    float* gq = dqkv + (b * L + q) * ld + i * dh;
    for (int64_t c = 0; c < dh; ++c) {
      float acc = 0.f;
      for (int64_t k = 0; k < len; ++k)
        acc = __fadd_rn(acc, __fmul_rn(g[k], rows[k * ld + d + i * dh + c]));
      gq[c] = __fmul_rn(acc, scale);
    }
  }
}

// dK and dV of one (sample, head, key) over every query row, from the dS rows written by the
// kernel above (keys k >= len get zeros).
__global__ void attention_backward_key_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                              float scale, const int64_t* __restrict__ lengths,
                                              const float* __restrict__ qkv,
                                              const float* __restrict__ probs,
                                              const float* __restrict__ dout,
                                              const float* __restrict__ ds,
                                              float* __restrict__ dqkv) {
  const int64_t d = heads * dh, ld = 3 * d, n = B * heads * L;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n;
       r += int64_t(gridDim.x) * blockDim.x) {
    const auto [k, i, b] = head_row(r, L, heads);
    const int64_t bi = r / L;
    const bool valid = k < clamp_length(lengths[b], L);
    const float* rows = qkv + b * L * ld;
    const float* p = probs + bi * L * L + k;  // column k of the head's (L, L) block
    const float* g = ds + bi * L * L + k;
    float* gk = dqkv + (b * L + k) * ld + d + i * dh;
    float* gv = dqkv + (b * L + k) * ld + 2 * d + i * dh;
    for (int64_t c = 0; c < dh; ++c) {
      float acc_k = 0.f, acc_v = 0.f;
      for (int64_t q = 0; valid && q < L; ++q) {
        acc_k = __fadd_rn(acc_k, __fmul_rn(g[q * L], rows[q * ld + i * dh + c]));
        acc_v = __fadd_rn(acc_v, __fmul_rn(p[q * L], dout[(b * L + q) * d + i * dh + c]));
      }
      gk[c] = valid ? __fmul_rn(acc_k, scale) : 0.f;
      gv[c] = acc_v;
    }
  }
}

}  // namespace

void attention_forward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                       float scale, const int64_t* lengths, const float* qkv, float* probs,
                       float* out) {
  const int64_t n = B * heads * L;
  if (n == 0) return;
  attention_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(B, L, heads, dh, scale,
                                                                       lengths, qkv, probs, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_forward");
}

void attention_backward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                        float scale, const int64_t* lengths, const float* qkv, const float* probs,
                        const float* dout, float* ds, float* dqkv) {
  const int64_t n = B * heads * L;
  if (n == 0) return;
  attention_backward_query_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      B, L, heads, dh, scale, lengths, qkv, probs, dout, ds, dqkv);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_backward");
  attention_backward_key_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      B, L, heads, dh, scale, lengths, qkv, probs, dout, ds, dqkv);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_backward");
}

}  // namespace lockstep::kernels::cuda

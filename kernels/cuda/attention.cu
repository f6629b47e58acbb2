// CUDA multi-head attention core (kernels/attention.h), float.
//
// One thread per (sample, head, query row) for the forward and for dP/dS/dQ; one thread per
// (sample, head, key row) for dK and dV, so that every output entry is written by one thread
// that sums in the header's order (no atomics: run-to-run bitwise). `lengths` are clamped to
// [0, L]. Sizes are validated by the dispatcher.
//
// Staged: a thread's row touches memory 84 to 384 bytes away from its neighbours' (bst-bench:
// L = 21, d = 32), so read straight from global memory each warp instruction costs a sector per
// lane (the emulator's memory-access profile: 19 sectors per request where 3 would do, half of
// bst-bench's estimated device time). Where a sample's rows fit in shared memory, one block per
// sample copies them in with consecutive threads on consecutive addresses, runs the same
// per-row code on the copies (forward_row & co., so the bits do not change), and copies its
// outputs out the same way; the backward's two passes meet in one block. Larger samples run the
// per-row code on global memory, one thread per row as before.

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

// Sample b's qkv rows, `ld` apart (3d in global memory): head i's query/key row t is at
// t * ld + i * dh (Q), + d (K), + 2d (V).

// The forward of (head i, query q): its probs row p (L) and output o (dh).
__device__ __forceinline__ void forward_row(int64_t L, int64_t d, int64_t dh, float scale,
                                            int64_t len, const float* rows, int64_t ld, int64_t q,
                                            int64_t i, float* p, float* o) {
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

// dS row g (L) and dQ (gq, dh) of (head i, query q), from its probs row p and dO row go (dh).
__device__ __forceinline__ void backward_query_row(int64_t L, int64_t d, int64_t dh, float scale,
                                                   int64_t len, const float* rows, int64_t ld,
                                                   int64_t i, const float* p, const float* go,
                                                   float* g, float* gq) {
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
  for (int64_t c = 0; c < dh; ++c) {
    float acc = 0.f;
    for (int64_t k = 0; k < len; ++k)
      acc = __fadd_rn(acc, __fmul_rn(g[k], rows[k * ld + d + i * dh + c]));
    gq[c] = __fmul_rn(acc, scale);
  }
}

// dK (gk) and dV (gv) of (head i, key k) over every query row: p and g point at column k of the
// head's (L, L) probs and dS blocks (rows lp apart), dout at the sample's dO rows (ldo apart).
__device__ __forceinline__ void backward_key_row(int64_t L, int64_t dh, float scale, bool valid,
                                                 const float* rows, int64_t ld, int64_t i,
                                                 const float* p, const float* g, int64_t lp,
                                                 const float* dout, int64_t ldo, float* gk,
                                                 float* gv) {
  for (int64_t c = 0; c < dh; ++c) {
    float acc_k = 0.f, acc_v = 0.f;
    for (int64_t q = 0; valid && q < L; ++q) {
      acc_k = __fadd_rn(acc_k, __fmul_rn(g[q * lp], rows[q * ld + i * dh + c]));
      acc_v = __fadd_rn(acc_v, __fmul_rn(p[q * lp], dout[q * ldo + i * dh + c]));
    }
    gk[c] = valid ? __fmul_rn(acc_k, scale) : 0.f;
    gv[c] = acc_v;
  }
}

// Shared memory of the staged kernels, in floats: static, under the 48 KiB a block may have
// without opting in (the forward's smaller, so that more of its blocks fit on an SM).
constexpr int64_t kForwardStage = 8192;
constexpr int64_t kBackwardStage = 12288;

// Row strides in shared memory: odd, so that lanes on consecutive rows hit different banks.
__host__ __device__ __forceinline__ int64_t odd(int64_t n) { return n | 1; }

// A sample's arrays in shared memory, in floats: rows of qkv's width (L, odd(3d)), of d
// (L, odd(d)), and of probs' (heads * L, odd(L)). The kernels lay them out one after another;
// the launchers check that they fit.
struct StageLayout {
  int64_t d, hl, s_ld, s_lp, s_ldo;
  __host__ __device__ StageLayout(int64_t L, int64_t heads, int64_t dh)
      : d(heads * dh), hl(heads * L), s_ld(odd(3 * d)), s_lp(odd(L)), s_ldo(odd(d)) {}
  __host__ __device__ int64_t qkv_rows(int64_t L) const { return L * s_ld; }
  __host__ __device__ int64_t d_rows(int64_t L) const { return L * s_ldo; }
  __host__ __device__ int64_t l_rows() const { return hl * s_lp; }
  // The forward's qkv, probs, out; the backward's qkv, probs, dO, dS, dqkv.
  __host__ __device__ int64_t forward_floats(int64_t L) const {
    return qkv_rows(L) + l_rows() + d_rows(L);
  }
  __host__ __device__ int64_t backward_floats(int64_t L) const {
    return 2 * qkv_rows(L) + 2 * l_rows() + d_rows(L);
  }
};

// rows x width floats from rows `from_ld` apart to rows `to_ld` apart, by the whole block with
// consecutive threads on consecutive columns (coalesced on the side whose rows are contiguous).
__device__ __forceinline__ void copy_rows(const float* __restrict__ from, int64_t from_ld,
                                          float* __restrict__ to, int64_t to_ld, int64_t rows,
                                          int64_t width) {
  for (int64_t j = threadIdx.x; j < rows * width; j += blockDim.x) {
    const int64_t r = j / width, c = j - r * width;
    to[r * to_ld + c] = from[r * from_ld + c];
  }
}

// One block of heads * L threads per sample (grid-stride over samples); thread t = i * L + q.
// Shared (StageLayout): the sample's qkv rows, probs, out rows.
__global__ void attention_forward_staged_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                                float scale, const int64_t* __restrict__ lengths,
                                                const float* __restrict__ qkv,
                                                float* __restrict__ probs,
                                                float* __restrict__ out) {
  __shared__ float stage[kForwardStage];
  const StageLayout sl(L, heads, dh);
  const int64_t d = sl.d, ld = 3 * d, hl = sl.hl, s_ld = sl.s_ld, s_lp = sl.s_lp, s_ldo = sl.s_ldo;
  float* s_rows = stage;
  float* s_probs = s_rows + sl.qkv_rows(L);
  float* s_out = s_probs + sl.l_rows();
  const int64_t t = threadIdx.x, i = t / L, q = t - i * L;
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int64_t len = clamp_length(lengths[b], L);
    copy_rows(qkv + b * L * ld, ld, s_rows, s_ld, L, ld);
    __syncthreads();
    forward_row(L, d, dh, scale, len, s_rows, s_ld, q, i, s_probs + t * s_lp,
                s_out + q * s_ldo + i * dh);
    __syncthreads();
    copy_rows(s_probs, s_lp, probs + b * hl * L, L, hl, L);
    copy_rows(s_out, s_ldo, out + b * L * d, d, L, d);
    __syncthreads();  // (the next sample overwrites the stage)
  }
}

// One block of heads * L threads per sample: dS and dQ with thread t = i * L + q, then dK and
// dV with thread t = i * L + k. Shared (StageLayout): the sample's qkv rows, probs, dO rows, dS,
// dqkv rows.
__global__ void attention_backward_staged_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                                 float scale, const int64_t* __restrict__ lengths,
                                                 const float* __restrict__ qkv,
                                                 const float* __restrict__ probs,
                                                 const float* __restrict__ dout,
                                                 float* __restrict__ ds, float* __restrict__ dqkv) {
  __shared__ float stage[kBackwardStage];
  const StageLayout sl(L, heads, dh);
  const int64_t d = sl.d, ld = 3 * d, hl = sl.hl, s_ld = sl.s_ld, s_lp = sl.s_lp, s_ldo = sl.s_ldo;
  float* s_rows = stage;
  float* s_probs = s_rows + sl.qkv_rows(L);
  float* s_dout = s_probs + sl.l_rows();
  float* s_ds = s_dout + sl.d_rows(L);
  float* s_dqkv = s_ds + sl.l_rows();
  const int64_t t = threadIdx.x, i = t / L, r = t - i * L;  // r: a query, then a key
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int64_t len = clamp_length(lengths[b], L);
    copy_rows(qkv + b * L * ld, ld, s_rows, s_ld, L, ld);
    copy_rows(probs + b * hl * L, L, s_probs, s_lp, hl, L);
    copy_rows(dout + b * L * d, d, s_dout, s_ldo, L, d);
    __syncthreads();
    backward_query_row(L, d, dh, scale, len, s_rows, s_ld, i, s_probs + t * s_lp,
                       s_dout + r * s_ldo + i * dh, s_ds + t * s_lp, s_dqkv + r * s_ld + i * dh);
    __syncthreads();
    backward_key_row(L, dh, scale, r < len, s_rows, s_ld, i, s_probs + i * L * s_lp + r,
                     s_ds + i * L * s_lp + r, s_lp, s_dout, s_ldo, s_dqkv + r * s_ld + d + i * dh,
                     s_dqkv + r * s_ld + 2 * d + i * dh);
    __syncthreads();
    copy_rows(s_ds, s_lp, ds + b * hl * L, L, hl, L);
    copy_rows(s_dqkv, s_ld, dqkv + b * L * ld, ld, L, ld);
    __syncthreads();
  }
}

// Unstaged: one thread per (sample, head, row) of the (B, heads, L) rows, on global memory.
__global__ void attention_forward_kernel(int64_t B, int64_t L, int64_t heads, int64_t dh,
                                         float scale, const int64_t* __restrict__ lengths,
                                         const float* __restrict__ qkv, float* __restrict__ probs,
                                         float* __restrict__ out) {
  const int64_t d = heads * dh, ld = 3 * d, n = B * heads * L;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n;
       r += int64_t(gridDim.x) * blockDim.x) {
    const auto [q, i, b] = head_row(r, L, heads);
    forward_row(L, d, dh, scale, clamp_length(lengths[b], L), qkv + b * L * ld, ld, q, i,
                probs + r * L, out + (b * L + q) * d + i * dh);
  }
}

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
    backward_query_row(L, d, dh, scale, clamp_length(lengths[b], L), qkv + b * L * ld, ld, i,
                       probs + r * L, dout + (b * L + q) * d + i * dh, ds + r * L,
                       dqkv + (b * L + q) * ld + i * dh);
  }
}

// From the dS rows written by the kernel above (keys k >= len get zeros).
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
    backward_key_row(L, dh, scale, k < clamp_length(lengths[b], L), qkv + b * L * ld, ld, i,
                     probs + bi * L * L + k, ds + bi * L * L + k, L, dout + b * L * d, d,
                     dqkv + (b * L + k) * ld + d + i * dh,
                     dqkv + (b * L + k) * ld + 2 * d + i * dh);
  }
}

// Whether a sample's rows fit in one block and its staged arrays (`floats`) in `capacity`.
bool staged(int64_t hl, int64_t floats, int64_t capacity) {
  return hl <= 1024 && floats <= capacity;
}

unsigned sample_grid(int64_t B) { return static_cast<unsigned>(std::min<int64_t>(B, 65535LL * 8)); }

}  // namespace

void attention_forward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                       float scale, const int64_t* lengths, const float* qkv, float* probs,
                       float* out) {
  const int64_t n = B * heads * L;
  if (n == 0) return;
  const StageLayout sl(L, heads, dh);
  if (staged(sl.hl, sl.forward_floats(L), kForwardStage))
    attention_forward_staged_kernel<<<sample_grid(B), static_cast<unsigned>(heads * L), 0,
                                      stream_of(ctx)>>>(B, L, heads, dh, scale, lengths, qkv, probs,
                                                        out);
  else
    attention_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(B, L, heads, dh, scale,
                                                                         lengths, qkv, probs, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_forward");
}

void attention_backward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                        float scale, const int64_t* lengths, const float* qkv, const float* probs,
                        const float* dout, float* ds, float* dqkv) {
  const int64_t n = B * heads * L;
  if (n == 0) return;
  const StageLayout sl(L, heads, dh);
  if (staged(sl.hl, sl.backward_floats(L), kBackwardStage)) {
    attention_backward_staged_kernel<<<sample_grid(B), static_cast<unsigned>(heads * L), 0,
                                       stream_of(ctx)>>>(B, L, heads, dh, scale, lengths, qkv,
                                                         probs, dout, ds, dqkv);
    LOCKSTEP_KERNEL_CHECK(ctx, "attention_backward");
    return;
  }
  attention_backward_query_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      B, L, heads, dh, scale, lengths, qkv, probs, dout, ds, dqkv);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_backward");
  attention_backward_key_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      B, L, heads, dh, scale, lengths, qkv, probs, dout, ds, dqkv);
  LOCKSTEP_KERNEL_CHECK(ctx, "attention_backward");
}

}  // namespace lockstep::kernels::cuda

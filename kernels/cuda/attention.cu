// CUDA sequence-model kernels (kernels/attention.h), float.
//
// Determinism: every reduction has a fixed order that does not depend on scheduling: sums over
// positions run sequentially in a thread, row reductions use a fixed xor-butterfly over the
// lanes of one warp, column sums go through the fixed tree of column_reduce.cuh (via
// bias_grad). No atomics. GEMMs are cuBLAS, which is deterministic for a fixed problem on a
// fixed GPU.
//
// `lengths` live on the device, so they cannot be validated without a synchronisation; the
// kernels clamp them to [0, T] (to [0, n] for the softmax), so that a bad length can never read
// or write out of bounds. The CPU reference throws on them instead. Sizes and strides are
// checked on the host with the same messages as on the CPU.

#include <cstddef>

#include "kernels/attention.h"
#include "kernels/attention_args.h"
#include "kernels/bias.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"
#include "lockstep/core/philox.h"

namespace lockstep::kernels::cuda {

using detail::check_din_unit_args;
using detail::check_ld;
using detail::check_size;

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Carves one ctx.workspace() allocation into 256-byte aligned pieces: first reserve every piece,
// then request bytes(), then take them with at().
class WorkspaceLayout {
 public:
  size_t reserve(size_t bytes) {
    const size_t at = bytes_;
    bytes_ += (bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  }
  size_t bytes() const { return bytes_ > 0 ? bytes_ : 1; }

 private:
  static constexpr size_t kAlign = 256;
  size_t bytes_ = 0;
};

template <class T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

size_t floats(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

__device__ __forceinline__ int64_t clamp_length(int64_t len, int64_t max) {
  return len < 0 ? 0 : (len > max ? max : len);
}

// Sum over the 32 lanes of a warp by a fixed xor butterfly. Float addition is commutative, so
// every lane ends with the bitwise-same total, and the order is the same on every run.
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Blocks for the "one warp per row" kernels (grid-stride over rows).
unsigned warp_grid(int64_t rows) { return grid_for(rows * kWarp); }

// ---- DIN unit ------------------------------------------------------------------------------

// W: (4D, H) = [W_q; W_k; W_d; W_p]; w_qd = W_q + W_d, w_kd = W_k − W_d, each (D, H).
__global__ void din_fold_weights_kernel(int64_t DH, const float* __restrict__ W,
                                        float* __restrict__ w_qd, float* __restrict__ w_kd) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < DH;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float wd = W[2 * DH + i];
    w_qd[i] = __fadd_rn(W[i], wd);
    w_kd[i] = __fsub_rn(W[DH + i], wd);
  }
}

// qk: (B·T, D) contiguous = q[b] ⊙ k[b, t]; q: (B, D) stride ldq; k: (B·T, D) stride ldk.
// The (B·T, D) product is the one input of the third GEMM that no strided view can express.
__global__ void din_target_times_history_kernel(int64_t B, int64_t Tn, int64_t D,
                                                const float* __restrict__ q, int64_t ldq,
                                                const float* __restrict__ k, int64_t ldk,
                                                float* __restrict__ qk) {
  const int64_t n = B * Tn * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i - r * D, b = r / Tn;
    qk[i] = __fmul_rn(q[b * ldq + d], k[r * ldk + d]);
  }
}

// h: (B·T, H) += q_term[b] + bias, with q_term: (B, H), bias: (H). Fuses the per-sample
// broadcast of the target's term and the bias into one pass over h.
__global__ void din_add_target_term_kernel(int64_t B, int64_t Tn, int64_t H,
                                           const float* __restrict__ q_term,
                                           const float* __restrict__ bias, float* __restrict__ h) {
  const int64_t n = B * Tn * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / H, j = i - r * H, b = r / Tn;
    h[i] = __fadd_rn(h[i], __fadd_rn(q_term[b * H + j], bias[j]));
  }
}

// h: (rows, H) = bias broadcast (the D == 0 case: no GEMM term).
__global__ void broadcast_rows_kernel(int64_t rows, int64_t H, const float* __restrict__ bias,
                                      float* __restrict__ h) {
  const int64_t n = rows * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    h[i] = bias[i % H];
}

// S: (B, H) = Σ_t dh[b, t, :], dh: (B·T, H). One thread per (b, j), t in increasing order.
__global__ void sum_over_positions_kernel(int64_t B, int64_t Tn, int64_t H,
                                          const float* __restrict__ dh, float* __restrict__ S) {
  const int64_t n = B * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / H, j = i - b * H;
    const float* col = dh + b * Tn * H + j;
    float sum = 0.f;
    for (int64_t t = 0; t < Tn; ++t) sum = __fadd_rn(sum, col[t * H]);
    S[i] = sum;
  }
}

// dW: (4D, H); g_q = qᵀS, g_k = kᵀdh, each (D, H):
// dW_q += g_q, dW_k += g_k, dW_d += g_q − g_k (the gradient of q − k).
__global__ void din_accumulate_weight_grads_kernel(int64_t DH, const float* __restrict__ g_q,
                                                   const float* __restrict__ g_k,
                                                   float* __restrict__ dW) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < DH;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gq = g_q[i], gk = g_k[i];
    dW[i] = __fadd_rn(dW[i], gq);
    dW[DH + i] = __fadd_rn(dW[DH + i], gk);
    dW[2 * DH + i] = __fadd_rn(dW[2 * DH + i], __fsub_rn(gq, gk));
  }
}

// dk[b, t, :] += P[b, t, :] ⊙ q[b, :]; P: (B·T, D) contiguous, dk stride lddk, q stride ldq.
__global__ void din_history_grad_kernel(int64_t B, int64_t Tn, int64_t D,
                                        const float* __restrict__ P, const float* __restrict__ q,
                                        int64_t ldq, float* __restrict__ dk, int64_t lddk) {
  const int64_t n = B * Tn * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i - r * D, b = r / Tn;
    float* g = dk + r * lddk + d;
    *g = __fadd_rn(*g, __fmul_rn(P[i], q[b * ldq + d]));
  }
}

// dq[b, d] += Σ_t P[b, t, d] · k[b, t, d]: the sum over positions of the q ⊙ k gradient, one
// thread per (b, d), t in increasing order (fixed, no atomics).
__global__ void din_target_grad_kernel(int64_t B, int64_t Tn, int64_t D,
                                       const float* __restrict__ P, const float* __restrict__ k,
                                       int64_t ldk, float* __restrict__ dq, int64_t lddq) {
  const int64_t n = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / D, d = i - b * D;
    float sum = 0.f;
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      sum = __fadd_rn(sum, __fmul_rn(P[r * D + d], k[r * ldk + d]));
    }
    float* g = dq + b * lddq + d;
    *g = __fadd_rn(*g, sum);
  }
}

// ---- Weighted sum ----------------------------------------------------------------------------

// out[b, d] = Σ_{t < len_b} w[b, t] · x[b, t, d], one thread per (b, d), t in increasing order.
__global__ void weighted_sum_forward_kernel(int64_t B, int64_t Tn, int64_t D,
                                            const int64_t* __restrict__ lengths,
                                            const float* __restrict__ w,
                                            const float* __restrict__ x, int64_t ldx,
                                            float* __restrict__ out, int64_t ldo) {
  const int64_t n = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / D, d = i - b * D;
    const int64_t len = clamp_length(lengths[b], Tn);
    float sum = 0.f;
    for (int64_t t = 0; t < len; ++t)
      sum = __fadd_rn(sum, __fmul_rn(w[b * Tn + t], x[(b * Tn + t) * ldx + d]));
    out[b * ldo + d] = sum;
  }
}

// One warp per position (b, t): dw[b, t] = dout[b] · x[b, t] (a warp dot product over D), and in
// the same pass dx[b, t, :] += w[b, t] · dout[b, :]. Padding positions get dw = 0, dx untouched.
__global__ void weighted_sum_backward_kernel(int64_t B, int64_t Tn, int64_t D,
                                             const int64_t* __restrict__ lengths,
                                             const float* __restrict__ w,
                                             const float* __restrict__ x, int64_t ldx,
                                             const float* __restrict__ dout, int64_t lddo,
                                             float* __restrict__ dw, float* __restrict__ dx,
                                             int64_t lddx) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = B * Tn;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const int64_t b = r / Tn, t = r - b * Tn;
    if (t >= clamp_length(lengths[b], Tn)) {  // uniform over the warp
      if (lane == 0) dw[r] = 0.f;
      continue;
    }
    const float* g = dout + b * lddo;
    const float* x_row = x + r * ldx;
    const float wt = w[r];
    float dot = 0.f;
    for (int64_t d = lane; d < D; d += kWarp) {
      dot = __fadd_rn(dot, __fmul_rn(g[d], x_row[d]));
      if (dx != nullptr) dx[r * lddx + d] = __fadd_rn(dx[r * lddx + d], __fmul_rn(wt, g[d]));
    }
    dot = warp_sum(dot);
    if (lane == 0) dw[r] = dot;
  }
}

// ---- Masked softmax --------------------------------------------------------------------------

// One warp per row of (rows, n); lanes stride over the row, any n. y may alias x: every pass of
// a lane visits the same entries {lane, lane + 32, ...}, so each x is read only by the lane that
// later overwrites it. Rows with no valid entry are written as zeros without any exp. The exp
// is recomputed in the last pass instead of being stored, so that y never holds a partial value.
__global__ void masked_softmax_forward_kernel(int64_t rows, int64_t n, int64_t group,
                                              const int64_t* __restrict__ lengths, const float* x,
                                              float* y) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const int64_t valid = clamp_length(lengths[r / group], n);
    const float* x_row = x + r * n;
    float* y_row = y + r * n;
    float sum = 0.f, max = 0.f;
    if (valid > 0) {
      max = -INFINITY;
      for (int64_t j = lane; j < valid; j += kWarp) max = fmaxf(max, x_row[j]);
      max = warp_max(max);
      for (int64_t j = lane; j < valid; j += kWarp) sum = __fadd_rn(sum, expf(x_row[j] - max));
      sum = warp_sum(sum);  // >= 1: the max contributes exp(0)
    }
    const float inv = valid > 0 ? __fdiv_rn(1.f, sum) : 0.f;
    for (int64_t j = lane; j < n; j += kWarp)
      y_row[j] = j < valid ? __fmul_rn(expf(x_row[j] - max), inv) : 0.f;
  }
}

// dx = y ⊙ (dy − Σ y ⊙ dy), one warp per row; entries with y == 0 (masked) give 0 and are left
// out of the dot, so that dy there cannot leak in. dx may alias dy (the dot is complete, via
// the shuffles, before any write).
__global__ void masked_softmax_backward_kernel(int64_t rows, int64_t n, const float* __restrict__ y,
                                               const float* dy, float* dx) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const float* y_row = y + r * n;
    const float* dy_row = dy + r * n;
    float* dx_row = dx + r * n;
    float dot = 0.f;
    for (int64_t j = lane; j < n; j += kWarp)
      if (y_row[j] != 0.f) dot = __fadd_rn(dot, __fmul_rn(y_row[j], dy_row[j]));
    dot = warp_sum(dot);
    for (int64_t j = lane; j < n; j += kWarp) {
      const float yj = y_row[j];
      dx_row[j] = yj != 0.f ? __fmul_rn(yj, __fsub_rn(dy_row[j], dot)) : 0.f;
    }
  }
}

// ---- Padding mask ----------------------------------------------------------------------------

// x[b, t, 0:W] = 0 for t >= len_b; x: (B·T, W) with row stride ld.
__global__ void mask_positions_kernel(int64_t B, int64_t Tn, int64_t W,
                                      const int64_t* __restrict__ lengths, float* __restrict__ x,
                                      int64_t ld) {
  const int64_t n = B * Tn * W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / W, c = i - r * W, b = r / Tn, t = r - b * Tn;
    if (t >= clamp_length(lengths[b], Tn)) x[r * ld + c] = 0.f;
  }
}

// ---- Layer norm ------------------------------------------------------------------------------

// One warp per row of (rows, n): two passes (mean, then squared deviations), then y. The
// elementwise part uses the stored float statistics, like the CPU. y may alias x (all reads of
// the row end with the variance reduction, before the first write).
__global__ void layer_norm_forward_kernel(int64_t rows, int64_t n, float eps, const float* x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* y,
                                          float* __restrict__ mean, float* __restrict__ rstd) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  const float inv_n = __fdiv_rn(1.f, static_cast<float>(n));
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const float* x_row = x + r * n;
    float sum = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) sum = __fadd_rn(sum, x_row[j]);
    const float m = __fmul_rn(warp_sum(sum), inv_n);
    float sq = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) {
      const float d = __fsub_rn(x_row[j], m);
      sq = __fadd_rn(sq, __fmul_rn(d, d));
    }
    const float var = __fmul_rn(warp_sum(sq), inv_n);
    const float s = __fdiv_rn(1.f, __fsqrt_rn(__fadd_rn(var, eps)));
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = s;
    }
    float* y_row = y + r * n;
    for (int64_t j = lane; j < n; j += kWarp)
      y_row[j] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x_row[j], m), s), gamma[j]), beta[j]);
  }
}

// dx = rstd · (g − mean(g) − xhat · mean(g ⊙ xhat)) with g = dy ⊙ gamma; one warp per row; dx may
// alias dy (the row sums are complete before the first write).
__global__ void layer_norm_backward_dx_kernel(int64_t rows, int64_t n, const float* __restrict__ x,
                                              const float* __restrict__ gamma,
                                              const float* __restrict__ mean,
                                              const float* __restrict__ rstd, const float* dy,
                                              float* dx) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  const float inv_n = __fdiv_rn(1.f, static_cast<float>(n));
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; r < rows;
       r += warps) {
    const float* x_row = x + r * n;
    const float* dy_row = dy + r * n;
    const float m = mean[r], s = rstd[r];
    float sum_g = 0.f, sum_g_xhat = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) {
      const float xhat = __fmul_rn(__fsub_rn(x_row[j], m), s);
      const float g = __fmul_rn(dy_row[j], gamma[j]);
      sum_g = __fadd_rn(sum_g, g);
      sum_g_xhat = __fadd_rn(sum_g_xhat, __fmul_rn(g, xhat));
    }
    const float mean_g = __fmul_rn(warp_sum(sum_g), inv_n);
    const float mean_g_xhat = __fmul_rn(warp_sum(sum_g_xhat), inv_n);
    float* dx_row = dx + r * n;
    for (int64_t j = lane; j < n; j += kWarp) {
      const float xhat = __fmul_rn(__fsub_rn(x_row[j], m), s);
      const float g = __fmul_rn(dy_row[j], gamma[j]);
      dx_row[j] = __fmul_rn(s, __fsub_rn(__fsub_rn(g, mean_g), __fmul_rn(xhat, mean_g_xhat)));
    }
  }
}

// First stage of dgamma/dbeta: per chunk of kLayerNormChunk consecutive rows, the column sums of
// dy ⊙ xhat and dy, summed in row order by one thread per (chunk, column) (coalesced over
// columns). The second stage sums the (chunks, n) partials over chunks with the fixed tree of
// column_reduce.cuh (bias_grad). Two stages because a single column-tile pass would give a
// 32-column layer norm only 4 blocks for all rows.
//   x, dy: (rows, n); mean, rstd: (rows); part_gamma, part_beta: (chunks, n).
constexpr int64_t kLayerNormChunk = 32;
__global__ void layer_norm_param_partials_kernel(
    int64_t rows, int64_t n, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ rstd, const float* __restrict__ dy, float* __restrict__ part_gamma,
    float* __restrict__ part_beta) {
  const int64_t chunks = (rows + kLayerNormChunk - 1) / kLayerNormChunk;
  const int64_t total = chunks * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t chunk = i / n, c = i - chunk * n;
    const int64_t end = (chunk + 1) * kLayerNormChunk < rows ? (chunk + 1) * kLayerNormChunk : rows;
    float sg = 0.f, sb = 0.f;
    for (int64_t r = chunk * kLayerNormChunk; r < end; ++r) {
      const float g = dy[r * n + c];
      const float xhat = __fmul_rn(__fsub_rn(x[r * n + c], mean[r]), rstd[r]);
      sg = __fadd_rn(sg, __fmul_rn(g, xhat));
      sb = __fadd_rn(sb, g);
    }
    part_gamma[i] = sg;
    part_beta[i] = sb;
  }
}

// ---- Dropout ---------------------------------------------------------------------------------

// out_i = keep_i ? in_i · scale : 0 with keep_i = uniform01(philox(seed, stream, offset + i)) >= p:
// the same counter, the same 24-bit uniform compared with the same float p and the same float
// scale as the CPU, and a correctly rounded multiply, so the two agree bitwise.
__global__ void dropout_kernel(int64_t n, float p, float scale, uint64_t seed, uint64_t offset,
                               const float* in, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float u = uniform01_from_u32(philox_u32(seed, kDropoutStream, offset + uint64_t(i)));
    out[i] = u >= p ? __fmul_rn(in[i], scale) : 0.f;
  }
}

void run_dropout(const Context& ctx, const char* op, int64_t n, float p, uint64_t seed,
                 uint64_t offset, const float* in, float* out) {
  check_size(op, "n", n);
  detail::check_dropout_p(op, p);
  if (n == 0) return;
  if (p == 0.0f) {
    if (out != in)
      LOCKSTEP_CUDA_CHECK(
          cudaMemcpyAsync(out, in, floats(n), cudaMemcpyDeviceToDevice, stream_of(ctx)));
    return;
  }
  const float scale = 1.0f / (1.0f - p);  // host IEEE float division, as on the CPU
  dropout_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, p, scale, seed, offset, in, out);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

}  // namespace

// ---- DIN unit ------------------------------------------------------------------------------

// Three GEMMs and two small elementwise kernels (see kernels/cpu/attention.cpp for the
// decomposition): h = k·(W_k − W_d); h += (q ⊙ k)·W_p; q_term = q·(W_q + W_d); h += q_term + bias.
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                      const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                      const float* bias, float* h) {
  check_din_unit_args("din_unit_forward", B, Tn, D, H, ldq, ldk);
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  if (D == 0) {
    broadcast_rows_kernel<<<grid_for(rows * H), kBlock, 0, stream>>>(rows, H, bias, h);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(broadcast_rows)");
    return;
  }
  const int64_t DH = D * H;
  WorkspaceLayout layout;
  const size_t w_qd_at = layout.reserve(floats(DH));
  const size_t w_kd_at = layout.reserve(floats(DH));
  const size_t qk_at = layout.reserve(floats(rows * D));
  const size_t q_term_at = layout.reserve(floats(B * H));
  void* base = ctx.workspace(layout.bytes());
  float* w_qd = at<float>(base, w_qd_at);
  float* w_kd = at<float>(base, w_kd_at);
  float* qk = at<float>(base, qk_at);
  float* q_term = at<float>(base, q_term_at);

  din_fold_weights_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, W, w_qd, w_kd);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(fold_weights)");
  din_target_times_history_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, q, ldq, k,
                                                                             ldk, qk);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(target_times_history)");
  cuda::gemm(ctx, Trans::N, Trans::N, rows, H, D, 1.f, k, ldk, w_kd, H, 0.f, h, H);
  cuda::gemm(ctx, Trans::N, Trans::N, rows, H, D, 1.f, qk, D, W + 3 * DH, H, 1.f, h, H);
  cuda::gemm(ctx, Trans::N, Trans::N, B, H, D, 1.f, q, ldq, w_qd, H, 0.f, q_term, H);
  din_add_target_term_kernel<<<grid_for(rows * H), kBlock, 0, stream>>>(B, Tn, H, q_term, bias, h);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(add_target_term)");
}

void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                       const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                       const float* dh, float* dW, float* dbias, float* dq, int64_t lddq, float* dk,
                       int64_t lddk) {
  constexpr const char* op = "din_unit_backward";
  check_din_unit_args(op, B, Tn, D, H, ldq, ldk);
  if (dq != nullptr) check_ld(op, "lddq", lddq, "D", D);
  if (dk != nullptr) check_ld(op, "lddk", lddk, "D", D);
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  const int64_t DH = D * H;

  WorkspaceLayout layout;
  const size_t S_at = layout.reserve(floats(B * H));
  const size_t w_qd_at = layout.reserve(floats(DH));
  const size_t w_kd_at = layout.reserve(floats(DH));
  const size_t g_q_at = layout.reserve(floats(DH));
  const size_t g_k_at = layout.reserve(floats(DH));
  const size_t qk_at = layout.reserve(floats(rows * D));  // q ⊙ k, then P = dh·W_pᵀ
  void* base = ctx.workspace(layout.bytes());
  float* S = at<float>(base, S_at);
  float* w_qd = at<float>(base, w_qd_at);
  float* w_kd = at<float>(base, w_kd_at);
  float* g_q = at<float>(base, g_q_at);
  float* g_k = at<float>(base, g_k_at);
  float* qk = at<float>(base, qk_at);

  // S = Σ_t dh[b, t]: dbias = Σ_b S[b] and the q-side weight gradient both need only S.
  sum_over_positions_kernel<<<grid_for(B * H), kBlock, 0, stream>>>(B, Tn, H, dh, S);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(sum_over_positions)");
  cuda::bias_grad(ctx, B, H, S, dbias);
  if (D == 0) return;

  din_fold_weights_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, W, w_qd, w_kd);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(fold_weights)");
  din_target_times_history_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, q, ldq, k,
                                                                             ldk, qk);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(target_times_history)");
  cuda::gemm(ctx, Trans::T, Trans::N, D, H, rows, 1.f, k, ldk, dh, H, 0.f, g_k, H);
  cuda::gemm(ctx, Trans::T, Trans::N, D, H, B, 1.f, q, ldq, S, H, 0.f, g_q, H);
  cuda::gemm(ctx, Trans::T, Trans::N, D, H, rows, 1.f, qk, D, dh, H, 1.f, dW + 3 * DH, H);
  din_accumulate_weight_grads_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, g_q, g_k, dW);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(accumulate_weight_grads)");
  if (dq == nullptr && dk == nullptr) return;

  float* P = qk;  // stream order: the dW_p GEMM has consumed q ⊙ k before P overwrites it
  cuda::gemm(ctx, Trans::N, Trans::T, rows, D, H, 1.f, dh, H, W + 3 * DH, H, 0.f, P, D);
  if (dk != nullptr) {
    cuda::gemm(ctx, Trans::N, Trans::T, rows, D, H, 1.f, dh, H, w_kd, H, 1.f, dk, lddk);
    din_history_grad_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, P, q, ldq, dk,
                                                                       lddk);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(history_grad)");
  }
  if (dq != nullptr) {
    cuda::gemm(ctx, Trans::N, Trans::T, B, D, H, 1.f, S, H, w_qd, H, 1.f, dq, lddq);
    din_target_grad_kernel<<<grid_for(B * D), kBlock, 0, stream>>>(B, Tn, D, P, k, ldk, dq, lddq);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(target_grad)");
  }
}

// ---- Weighted sum ----------------------------------------------------------------------------

void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                          float* out, int64_t ldo) {
  constexpr const char* op = "weighted_sum_forward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "ldo", ldo, "D", D);
  if (B == 0 || D == 0) return;
  weighted_sum_forward_kernel<<<grid_for(B * D), kBlock, 0, stream_of(ctx)>>>(B, Tn, D, lengths, w,
                                                                              x, ldx, out, ldo);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                           const float* dout, int64_t lddo, float* dw, float* dx, int64_t lddx) {
  constexpr const char* op = "weighted_sum_backward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "lddo", lddo, "D", D);
  if (dx != nullptr) check_ld(op, "lddx", lddx, "D", D);
  const int64_t rows = B * Tn;
  if (rows == 0) return;
  weighted_sum_backward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(
      B, Tn, D, lengths, w, x, ldx, dout, lddo, dw, dx, lddx);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

// ---- Masked softmax --------------------------------------------------------------------------

void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const float* x, float* y) {
  constexpr const char* op = "masked_softmax_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(group >= 1, "{}: group = {} must be >= 1", op, group);
  if (rows == 0 || n == 0) return;
  masked_softmax_forward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, group,
                                                                                lengths, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const float* y,
                             const float* dy, float* dx) {
  constexpr const char* op = "masked_softmax_backward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  if (rows == 0 || n == 0) return;
  masked_softmax_backward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, y, dy,
                                                                                 dx);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

// ---- Padding mask ----------------------------------------------------------------------------

void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    float* x, int64_t ld) {
  constexpr const char* op = "mask_positions";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "W", W);
  check_ld(op, "ld", ld, "W", W);
  const int64_t n = B * Tn * W;
  if (n == 0) return;
  mask_positions_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(B, Tn, W, lengths, x, ld);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

// ---- Layer norm ------------------------------------------------------------------------------

void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, float eps, const float* x,
                        const float* gamma, const float* beta, float* y, float* mean, float* rstd) {
  constexpr const char* op = "layer_norm_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(n >= 1 || rows == 0, "{}: n = 0 but rows = {} (a row needs an element)", op, rows);
  if (rows == 0) return;
  layer_norm_forward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, eps, x, gamma,
                                                                            beta, y, mean, rstd);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const float* x,
                         const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta) {
  constexpr const char* op = "layer_norm_backward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  if (rows == 0 || n == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  const int64_t chunks = ceil_div(rows, kLayerNormChunk);
  WorkspaceLayout layout;
  const size_t gamma_at = layout.reserve(floats(chunks * n));
  const size_t beta_at = layout.reserve(floats(chunks * n));
  void* base = ctx.workspace(layout.bytes());
  float* part_gamma = at<float>(base, gamma_at);
  float* part_beta = at<float>(base, beta_at);

  // The parameter gradients read dy first: dx may alias dy and is written last.
  layer_norm_param_partials_kernel<<<grid_for(chunks * n), kBlock, 0, stream>>>(
      rows, n, x, mean, rstd, dy, part_gamma, part_beta);
  LOCKSTEP_KERNEL_CHECK(ctx, "layer_norm_backward(param_partials)");
  cuda::bias_grad(ctx, chunks, n, part_gamma, dgamma);
  cuda::bias_grad(ctx, chunks, n, part_beta, dbeta);
  layer_norm_backward_dx_kernel<<<warp_grid(rows), kBlock, 0, stream>>>(rows, n, x, gamma, mean,
                                                                        rstd, dy, dx);
  LOCKSTEP_KERNEL_CHECK(ctx, "layer_norm_backward(dx)");
}

// ---- Dropout ---------------------------------------------------------------------------------

void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                     const float* x, float* y) {
  run_dropout(ctx, "dropout_forward", n, p, seed, offset, x, y);
}

void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, uint64_t offset,
                      const float* dy, float* dx) {
  run_dropout(ctx, "dropout_backward", n, p, seed, offset, dy, dx);
}

}  // namespace lockstep::kernels::cuda

// CUDA DIN local activation unit (kernels/din_unit.h), float.
//
// GEMMs (cuBLAS, deterministic for a fixed problem on a fixed GPU) and small elementwise kernels,
// following the algebra of kernels/cpu/din_unit.cpp: X = [k, q ⊙ k] (B·T, 2D) against the folded
// weights [W_k − W_d; W_p], one GEMM where there were two, whole-batch instead of the CPU's tiles.
// Sums over positions run sequentially in one thread per output element (fixed order, no atomics);
// the bias gradient goes through the fixed tree of column_reduce.cuh (via bias_grad). Sizes and
// strides are validated by the dispatcher.

#include "kernels/activation.h"
#include "kernels/bias.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/din_unit.h"
#include "kernels/gemm.h"

namespace lockstep::kernels::cuda {

namespace {

// W: (4D, H) = [W_q; W_k; W_d; W_p]; w_x = [W_k − W_d; W_p] (2D, H), the weights of
// X = [k, q ⊙ k]; w_qd = W_q + W_d (D, H).
__global__ void din_fold_weights_kernel(int64_t DH, const float* __restrict__ W,
                                        float* __restrict__ w_x, float* __restrict__ w_qd) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < DH;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float wd = W[2 * DH + i];
    w_qd[i] = __fadd_rn(W[i], wd);
    w_x[i] = __fsub_rn(W[DH + i], wd);
    w_x[DH + i] = W[3 * DH + i];
  }
}

// X: (B·T, 2D) contiguous, X[r] = [k[r], q[b] ⊙ k[r]]; q: (B, D) stride ldq; k: (B·T, D) stride
// ldk. One GEMM against w_x then gives both terms of the history side.
__global__ void din_build_x_kernel(int64_t B, int64_t Tn, int64_t D, const float* __restrict__ q,
                                   int64_t ldq, const float* __restrict__ k, int64_t ldk,
                                   float* __restrict__ X) {
  const int64_t n = B * Tn * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i - r * D, b = r / Tn;
    const float kv = k[r * ldk + d];
    X[r * 2 * D + d] = kv;
    X[r * 2 * D + D + d] = __fmul_rn(q[b * ldq + d], kv);
  }
}

// h: (B·T, H) += q_term[b] + bias, with q_term: (B, H), bias: (H). Fuses the per-sample
// broadcast of the target's term and the bias into one pass over h; with alpha (H) != nullptr
// also a = PReLU(h) (as prelu_forward_kernel computes it) in the same pass.
__global__ void din_add_target_term_kernel(int64_t B, int64_t Tn, int64_t H,
                                           const float* __restrict__ q_term,
                                           const float* __restrict__ bias,
                                           const float* __restrict__ alpha, float* __restrict__ h,
                                           float* __restrict__ a) {
  const int64_t n = B * Tn * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / H, j = i - r * H, b = r / Tn;
    const float v = __fadd_rn(h[i], __fadd_rn(q_term[b * H + j], bias[j]));
    h[i] = v;
    if (alpha != nullptr) a[i] = v > 0.f ? v : __fmul_rn(alpha[j], v);
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

// dW: (4D, H); g_x = Xᵀdh = [g_k; g_p] (2D, H), g_q = qᵀS (D, H):
// dW_q += g_q, dW_k += g_k, dW_d += g_q − g_k (the gradient of q − k), dW_p += g_p.
__global__ void din_accumulate_weight_grads_kernel(int64_t DH, const float* __restrict__ g_x,
                                                   const float* __restrict__ g_q,
                                                   float* __restrict__ dW) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < DH;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gq = g_q[i], gk = g_x[i];
    dW[i] = __fadd_rn(dW[i], gq);
    dW[DH + i] = __fadd_rn(dW[DH + i], gk);
    dW[2 * DH + i] = __fadd_rn(dW[2 * DH + i], __fsub_rn(gq, gk));
    dW[3 * DH + i] = __fadd_rn(dW[3 * DH + i], g_x[DH + i]);
  }
}

// dk[b, t, :] += Y_k[b, t, :] + P[b, t, :] ⊙ q[b, :], with Y = [Y_k, P] = dh·w_xᵀ (B·T, 2D)
// contiguous; dk stride lddk, q stride ldq.
__global__ void din_history_grad_kernel(int64_t B, int64_t Tn, int64_t D,
                                        const float* __restrict__ Y, const float* __restrict__ q,
                                        int64_t ldq, float* __restrict__ dk, int64_t lddk) {
  const int64_t n = B * Tn * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i - r * D, b = r / Tn;
    const float* y = Y + r * 2 * D;
    float* g = dk + r * lddk + d;
    *g = __fadd_rn(__fadd_rn(*g, y[d]), __fmul_rn(y[D + d], q[b * ldq + d]));
  }
}

// dq[b, d] += Σ_t P[b, t, d] · k[b, t, d] (P: the second half of Y's rows): the sum over positions
// of the q ⊙ k gradient, one thread per (b, d), t in increasing order (fixed, no atomics).
__global__ void din_target_grad_kernel(int64_t B, int64_t Tn, int64_t D,
                                       const float* __restrict__ Y, const float* __restrict__ k,
                                       int64_t ldk, float* __restrict__ dq, int64_t lddq) {
  const int64_t n = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / D, d = i - b * D;
    float sum = 0.f;
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      sum = __fadd_rn(sum, __fmul_rn(Y[r * 2 * D + D + d], k[r * ldk + d]));
    }
    float* g = dq + b * lddq + d;
    *g = __fadd_rn(*g, sum);
  }
}

// Two GEMMs and three small elementwise kernels (see kernels/cpu/din_unit.cpp for the algebra):
// h = [k, q ⊙ k]·[W_k − W_d; W_p]; q_term = q·(W_q + W_d); h += q_term + bias (and, with alpha,
// a = PReLU(h) in that pass).
void unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const float* q,
                  int64_t ldq, const float* k, int64_t ldk, const float* W, const float* bias,
                  const float* alpha, float* h, float* a) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  if (D == 0) {
    broadcast_rows_kernel<<<grid_for(rows * H), kBlock, 0, stream>>>(rows, H, bias, h);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(broadcast_rows)");
    if (alpha != nullptr) cuda::prelu_forward(ctx, rows, H, h, alpha, a);
    return;
  }
  const int64_t DH = D * H;
  WorkspaceLayout layout;
  const size_t w_x_at = layout.reserve(floats(2 * DH));
  const size_t w_qd_at = layout.reserve(floats(DH));
  const size_t X_at = layout.reserve(floats(rows * 2 * D));
  const size_t q_term_at = layout.reserve(floats(B * H));
  void* base = ctx.workspace(layout.bytes());
  float* w_x = at<float>(base, w_x_at);
  float* w_qd = at<float>(base, w_qd_at);
  float* X = at<float>(base, X_at);
  float* q_term = at<float>(base, q_term_at);

  din_fold_weights_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, W, w_x, w_qd);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(fold_weights)");
  din_build_x_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, q, ldq, k, ldk, X);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(build_x)");
  cuda::gemm(ctx, Trans::N, Trans::N, rows, H, 2 * D, 1.f, X, 2 * D, w_x, H, 0.f, h, H);
  cuda::gemm(ctx, Trans::N, Trans::N, B, H, D, 1.f, q, ldq, w_qd, H, 0.f, q_term, H);
  din_add_target_term_kernel<<<grid_for(rows * H), kBlock, 0, stream>>>(B, Tn, H, q_term, bias,
                                                                        alpha, h, a);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_forward(add_target_term)");
}

}  // namespace

void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                      const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                      const float* bias, float* h) {
  unit_forward(ctx, B, Tn, D, H, q, ldq, k, ldk, W, bias, nullptr, h, nullptr);
}

void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                       const float* q, int64_t ldq, const float* k, int64_t ldk, const float* W,
                       const float* dh, float* dW, float* dbias, float* dq, int64_t lddq, float* dk,
                       int64_t lddk) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  const int64_t DH = D * H;

  WorkspaceLayout layout;
  const size_t S_at = layout.reserve(floats(B * H));
  const size_t w_x_at = layout.reserve(floats(2 * DH));
  const size_t w_qd_at = layout.reserve(floats(DH));
  const size_t g_x_at = layout.reserve(floats(2 * DH));
  const size_t g_q_at = layout.reserve(floats(DH));
  const size_t X_at = layout.reserve(floats(rows * 2 * D));  // [k, q ⊙ k], then Y = dh·w_xᵀ
  void* base = ctx.workspace(layout.bytes());
  float* S = at<float>(base, S_at);
  float* w_x = at<float>(base, w_x_at);
  float* w_qd = at<float>(base, w_qd_at);
  float* g_x = at<float>(base, g_x_at);
  float* g_q = at<float>(base, g_q_at);
  float* X = at<float>(base, X_at);

  // S = Σ_t dh[b, t]: dbias = Σ_b S[b] and the q-side weight gradient both need only S.
  sum_over_positions_kernel<<<grid_for(B * H), kBlock, 0, stream>>>(B, Tn, H, dh, S);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(sum_over_positions)");
  cuda::bias_grad(ctx, B, H, S, dbias);
  if (D == 0) return;

  din_fold_weights_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, W, w_x, w_qd);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(fold_weights)");
  din_build_x_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, q, ldq, k, ldk, X);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(build_x)");
  cuda::gemm(ctx, Trans::T, Trans::N, 2 * D, H, rows, 1.f, X, 2 * D, dh, H, 0.f, g_x, H);
  cuda::gemm(ctx, Trans::T, Trans::N, D, H, B, 1.f, q, ldq, S, H, 0.f, g_q, H);
  din_accumulate_weight_grads_kernel<<<grid_for(DH), kBlock, 0, stream>>>(DH, g_x, g_q, dW);
  LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(accumulate_weight_grads)");
  if (dq == nullptr && dk == nullptr) return;

  float* Y = X;  // stream order: the weight-gradient GEMM has consumed X before Y overwrites it
  cuda::gemm(ctx, Trans::N, Trans::T, rows, 2 * D, H, 1.f, dh, H, w_x, H, 0.f, Y, 2 * D);
  if (dk != nullptr) {
    din_history_grad_kernel<<<grid_for(rows * D), kBlock, 0, stream>>>(B, Tn, D, Y, q, ldq, dk,
                                                                       lddk);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(history_grad)");
  }
  if (dq != nullptr) {
    cuda::gemm(ctx, Trans::N, Trans::T, B, D, H, 1.f, S, H, w_qd, H, 1.f, dq, lddq);
    din_target_grad_kernel<<<grid_for(B * D), kBlock, 0, stream>>>(B, Tn, D, Y, k, ldk, dq, lddq);
    LOCKSTEP_KERNEL_CHECK(ctx, "din_unit_backward(target_grad)");
  }
}

// The PReLU-fused pair: the forward applies PReLU in the pass that adds the target's term; the
// backward runs prelu_backward (its dalpha reduction) in place over da, which then holds dh
// (allowed by the contract), then the unit's backward.
void din_unit_prelu_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                            const float* q, int64_t ldq, const float* k, int64_t ldk,
                            const float* W, const float* bias, const float* alpha, float* h,
                            float* a) {
  unit_forward(ctx, B, Tn, D, H, q, ldq, k, ldk, W, bias, alpha, h, a);
}

void din_unit_prelu_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                             const float* q, int64_t ldq, const float* k, int64_t ldk,
                             const float* W, const float* h, const float* alpha, float* da,
                             float* dW, float* dbias, float* dalpha, float* dq, int64_t lddq,
                             float* dk, int64_t lddk) {
  cuda::prelu_backward(ctx, B * Tn, H, h, alpha, da, da, dalpha);
  din_unit_backward(ctx, B, Tn, D, H, q, ldq, k, ldk, W, da, dW, dbias, dq, lddq, dk, lddk);
}

}  // namespace lockstep::kernels::cuda

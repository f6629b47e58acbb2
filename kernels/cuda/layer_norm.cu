// CUDA layer normalisation (kernels/layer_norm.h), float.
//
// One warp per row for the statistics and dx (fixed butterflies of warp.cuh); the parameter
// gradients are column sums in two fixed-order stages (chunk partials, then the tree of
// column_reduce.cuh via bias_grad). No atomics. Sizes are validated by the dispatcher.

#include "kernels/bias.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/layer_norm.h"

namespace lockstep::kernels::cuda {

namespace {

// One warp per row of (rows, n): two passes (mean, then squared deviations), then y. The
// elementwise part uses the stored float statistics, like the CPU. y may alias x (all reads of
// the row end with the variance reduction, before the first write).
__global__ void layer_norm_forward_kernel(int64_t rows, int64_t n, float eps, const float* x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* y,
                                          float* __restrict__ mean, float* __restrict__ rstd) {
  const int lane = threadIdx.x % kWarp;
  const float inv_n = __fdiv_rn(1.f, static_cast<float>(n));
  for (int64_t r = first_warp_row(); r < rows; r += warp_row_stride()) {
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
  const float inv_n = __fdiv_rn(1.f, static_cast<float>(n));
  for (int64_t r = first_warp_row(); r < rows; r += warp_row_stride()) {
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

}  // namespace

void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, float eps, const float* x,
                        const float* gamma, const float* beta, float* y, float* mean, float* rstd) {
  if (rows == 0) return;
  layer_norm_forward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, eps, x, gamma,
                                                                            beta, y, mean, rstd);
  LOCKSTEP_KERNEL_CHECK(ctx, "layer_norm_forward");
}

void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const float* x,
                         const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta) {
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

}  // namespace lockstep::kernels::cuda

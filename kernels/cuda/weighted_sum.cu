// CUDA masked weighted sum over positions (kernels/weighted_sum.h), float.
//
// Sums over positions run sequentially in one thread per (b, d); the backward's dot products use
// one warp per position and the fixed butterfly of warp.cuh. No atomics. `lengths` live on the
// device, so they are clamped to [0, T] instead of validated (the CPU reference throws on them).
// Sizes and strides are validated by the dispatcher.

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lengths.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/weighted_sum.h"

namespace lockstep::kernels::cuda {

namespace {

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
  for (int64_t r = first_warp_row(); r < rows; r += warp_row_stride()) {
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

}  // namespace

void weighted_sum_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                          const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                          float* out, int64_t ldo) {
  if (B == 0 || D == 0) return;
  weighted_sum_forward_kernel<<<grid_for(B * D), kBlock, 0, stream_of(ctx)>>>(B, Tn, D, lengths, w,
                                                                              x, ldx, out, ldo);
  LOCKSTEP_KERNEL_CHECK(ctx, "weighted_sum_forward");
}

void weighted_sum_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D,
                           const int64_t* lengths, const float* w, const float* x, int64_t ldx,
                           const float* dout, int64_t lddo, float* dw, float* dx, int64_t lddx) {
  const int64_t rows = B * Tn;
  if (rows == 0) return;
  weighted_sum_backward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(
      B, Tn, D, lengths, w, x, ldx, dout, lddo, dw, dx, lddx);
  LOCKSTEP_KERNEL_CHECK(ctx, "weighted_sum_backward");
}

}  // namespace lockstep::kernels::cuda

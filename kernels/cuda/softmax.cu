// CUDA masked softmax and padding mask (kernels/softmax.h), float.
//
// One warp per softmax row; the row max and sum use the fixed butterflies of warp.cuh, so the
// result does not depend on scheduling. `lengths` live on the device, so they are clamped (to
// [0, n] for the softmax, [0, T] for the mask) instead of validated: a bad length can never read
// or write out of bounds (the CPU reference throws on them). Sizes are validated by the
// dispatcher.

#include <cmath>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lengths.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/softmax.h"

namespace lockstep::kernels::cuda {

namespace {

// One warp per row of (rows, n); lanes stride over the row, any n. y may alias x: every pass of
// a lane visits the same entries {lane, lane + 32, ...}, so each x is read only by the lane that
// later overwrites it. Rows with no valid entry are written as zeros without any exp. The exp
// is recomputed in the last pass instead of being stored, so that y never holds a partial value.
__global__ void masked_softmax_forward_kernel(int64_t rows, int64_t n, int64_t group,
                                              const int64_t* __restrict__ lengths, const float* x,
                                              float* y) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = first_warp_row(); r < rows; r += warp_row_stride()) {
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
  for (int64_t r = first_warp_row(); r < rows; r += warp_row_stride()) {
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

}  // namespace

void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const float* x, float* y) {
  if (rows == 0 || n == 0) return;
  masked_softmax_forward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, group,
                                                                                lengths, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "masked_softmax_forward");
}

void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const float* y,
                             const float* dy, float* dx) {
  if (rows == 0 || n == 0) return;
  masked_softmax_backward_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, y, dy,
                                                                                 dx);
  LOCKSTEP_KERNEL_CHECK(ctx, "masked_softmax_backward");
}

// ---- Padding mask ----------------------------------------------------------------------------

void mask_positions(const Context& ctx, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths,
                    float* x, int64_t ld) {
  const int64_t n = B * Tn * W;
  if (n == 0) return;
  mask_positions_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(B, Tn, W, lengths, x, ld);
  LOCKSTEP_KERNEL_CHECK(ctx, "mask_positions");
}

}  // namespace lockstep::kernels::cuda

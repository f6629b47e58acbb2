#include "kernels/bias.h"
#include "kernels/cuda/column_reduce.cuh"

namespace lockstep::kernels::cuda {

namespace {
// y: (rows, cols) row-major, updated in place; bias: (cols).
__global__ void bias_add_kernel(int64_t rows, int64_t cols, const float* bias, float* y) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

// dy: (rows, cols) row-major; dbias: (cols), accumulated. See column_reduce.cuh for the order.
__global__ void bias_grad_kernel(int64_t rows, int64_t cols, const float* dy, float* dbias) {
  __shared__ float smem[kColumnBlockThreads];
  const int64_t tiles = (cols + blockDim.x - 1) / blockDim.x;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * blockDim.x + threadIdx.x;
    float acc[1] = {0.f};
    if (c < cols)
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) acc[0] += dy[r * cols + c];
    column_tree_sum(acc, smem);
    if (threadIdx.y == 0 && c < cols) dbias[c] += acc[0];
  }
}
}  // namespace

void bias_add(const Context& ctx, int64_t rows, int64_t cols, const float* bias, float* y) {
  if (rows <= 0 || cols <= 0) return;
  bias_add_kernel<<<grid_for(rows * cols), kBlock, 0, stream_of(ctx)>>>(rows, cols, bias, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "bias_add");
}

void bias_grad(const Context& ctx, int64_t rows, int64_t cols, const float* dy, float* dbias) {
  if (rows <= 0 || cols <= 0) return;  // nothing to add
  const ColumnLaunch launch = column_launch(cols);
  bias_grad_kernel<<<launch.grid, launch.block, 0, stream_of(ctx)>>>(rows, cols, dy, dbias);
  LOCKSTEP_KERNEL_CHECK(ctx, "bias_grad");
}

}  // namespace lockstep::kernels::cuda

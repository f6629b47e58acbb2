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

// dy: (rows, cols) row-major; out: dbias (cols), accumulated, or the chunks' partials (see
// column_reduce.cuh for the order).
__global__ void bias_grad_kernel(int64_t rows, int64_t cols, int64_t chunk_rows, const float* dy,
                                 float* out) {
  __shared__ float smem[kColumnBlockThreads];
  int64_t r0, r1;
  chunk_rows_of(rows, chunk_rows, &r0, &r1);
  const int64_t tiles = (cols + blockDim.x - 1) / blockDim.x;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * blockDim.x + threadIdx.x;
    float acc[1] = {0.f};
    if (c < cols)
      for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) acc[0] += dy[r * cols + c];
    column_tree_sum(acc, smem);
    if (threadIdx.y == 0 && c < cols) store_column_total(out, cols, c, acc[0]);
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
  const ColumnLaunch launch = column_launch(rows, cols);
  float* totals = column_totals_target(ctx, launch, cols, dbias);
  bias_grad_kernel<<<launch.grid, launch.block, 0, stream_of(ctx)>>>(rows, cols, launch.chunk_rows,
                                                                     dy, totals);
  LOCKSTEP_KERNEL_CHECK(ctx, "bias_grad");
  add_column_partials(ctx, launch, cols, totals, dbias);
}

void add_column_partials(const Context& ctx, const ColumnLaunch& l, int64_t cols,
                         const float* partials, float* out) {
  if (l.chunks() == 1) return;
  const ColumnLaunch sum = column_launch(cols);  // one chunk: over all l.chunks() rows
  bias_grad_kernel<<<sum.grid, sum.block, 0, stream_of(ctx)>>>(l.chunks(), cols, sum.chunk_rows,
                                                               partials, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "column partial sums");
}

}  // namespace lockstep::kernels::cuda

#include "kernels/activation.h"
#include "kernels/cuda/column_reduce.cuh"

// CUDA kernels for kernels/activation.h; the CPU reference (kernels/cpu/activation.cpp) is the
// specification. Elementwise ops use grid-stride loops. Ops with a per-column reduction (PReLU
// backward, Dice) use the column-tile blocks of column_reduce.cuh: a block owns whole columns, so
// the reduction and the elementwise outputs that depend on it are fused into one launch and the
// reduction order is fixed.

namespace lockstep::kernels::cuda {

namespace {

/// 1 / (1 + exp(-x)) without overflow: expf only ever sees a non-positive argument.
__device__ inline float stable_sigmoid(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}

// ---- Elementwise: x, y, dy, dx are (n); dx may alias dy. -----------------------------------

__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.f ? x[i] : 0.f;
}

__global__ void relu_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = x[i] > 0.f ? dy[i] : 0.f;
}

__global__ void leaky_relu_forward_kernel(int64_t n, float slope, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.f ? x[i] : slope * x[i];
}

__global__ void leaky_relu_backward_kernel(int64_t n, float slope, const float* x, const float* dy,
                                           float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = x[i] > 0.f ? dy[i] : slope * dy[i];
}

__global__ void sigmoid_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = stable_sigmoid(x[i]);
}

// y: the forward output.
__global__ void sigmoid_backward_kernel(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * y[i] * (1.f - y[i]);
}

// ---- Per-column elementwise: x, y (rows, cols) row-major; alpha, running stats (cols). -----

__global__ void prelu_forward_kernel(int64_t rows, int64_t cols, const float* x, const float* alpha,
                                     float* y) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.f ? x[i] : alpha[i % cols] * x[i];
}

__global__ void dice_forward_infer_kernel(int64_t rows, int64_t cols, float eps, const float* x,
                                          const float* alpha, const float* running_mean,
                                          const float* running_var, float* y) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols;
    const float s = 1.f / sqrtf(running_var[c] + eps);
    const float p = stable_sigmoid((x[i] - running_mean[c]) * s);
    y[i] = x[i] * (alpha[c] + p * (1.f - alpha[c]));
  }
}

// mean, var, running_mean, running_var: (cols). unbias = rows / (rows - 1), or 1 for one row.
__global__ void dice_update_running_kernel(int64_t cols, float momentum, float unbias,
                                           const float* mean, const float* var, float* running_mean,
                                           float* running_var) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(gridDim.x) * blockDim.x) {
    running_mean[c] = momentum * running_mean[c] + (1.f - momentum) * mean[c];
    running_var[c] = momentum * running_var[c] + (1.f - momentum) * (var[c] * unbias);
  }
}

// ---- Column-tile kernels (kernels/cuda/column_reduce.cuh). ---------------------------------

// x, dy, dx: (rows, cols), dx may alias dy (each element's dy is read by the thread that then
// writes its dx); alpha: (cols); dalpha: (cols), accumulated, or the chunks' partials (see
// column_reduce.cuh).
__global__ void prelu_backward_kernel(int64_t rows, int64_t cols, int64_t chunk_rows,
                                      const float* x, const float* alpha, const float* dy,
                                      float* dx, float* dalpha) {
  __shared__ float smem[kColumnBlockThreads];
  int64_t r0, r1;
  chunk_rows_of(rows, chunk_rows, &r0, &r1);
  const int64_t tiles = (cols + blockDim.x - 1) / blockDim.x;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * blockDim.x + threadIdx.x;
    float acc[1] = {0.f};
    if (c < cols) {
      const float a = alpha[c];
      for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
        const int64_t i = r * cols + c;
        const float xi = x[i], g = dy[i];
        const bool positive = xi > 0.f;
        if (!positive) acc[0] += g * xi;
        dx[i] = positive ? g : a * g;  // one store for both sides
      }
    }
    column_tree_sum(acc, smem);
    if (threadIdx.y == 0 && c < cols) store_column_total(dalpha, cols, c, acc[0]);
  }
}

// x, y, p: (rows, cols); alpha, mean, var: (cols). Per tile: pass 1 column mean, pass 2 biased
// variance from squared deviations (two passes avoid the cancellation of E[x^2] - E[x]^2),
// pass 3 p and y. The tile's x is re-read from L2/DRAM three times; fusing keeps it one launch.
__global__ void dice_forward_train_kernel(int64_t rows, int64_t cols, float eps, const float* x,
                                          const float* alpha, float* y, float* mean, float* var,
                                          float* p) {
  __shared__ float smem[kColumnBlockThreads];
  const int64_t tiles = (cols + blockDim.x - 1) / blockDim.x;
  const float inv_rows = 1.f / static_cast<float>(rows);
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * blockDim.x + threadIdx.x;
    const bool active = c < cols;

    float acc[1] = {0.f};
    if (active)
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) acc[0] += x[r * cols + c];
    column_tree_sum(acc, smem);
    const float m = acc[0] * inv_rows;

    acc[0] = 0.f;
    if (active) {
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) {
        const float d = x[r * cols + c] - m;
        acc[0] += d * d;
      }
    }
    column_tree_sum(acc, smem);
    const float v = acc[0] * inv_rows;

    if (active) {
      if (threadIdx.y == 0) {
        mean[c] = m;
        var[c] = v;
      }
      const float s = 1.f / sqrtf(v + eps);
      const float a = alpha[c];
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) {
        const int64_t i = r * cols + c;
        const float pi = stable_sigmoid((x[i] - m) * s);
        p[i] = pi;
        y[i] = x[i] * (a + pi * (1.f - a));
      }
    }
  }
}

// x, p, dy, dx: (rows, cols), dx may alias dy; alpha, mean, var: (cols); dalpha (cols),
// accumulated. Pass 1: the column sums of g, g * xhat and dy * x * (1 - p); pass 2: dx (see
// the CPU reference for the formula). Pass 2 only starts after the tree's barriers, so every dy
// of the tile has been read before any dx is written.
__global__ void dice_backward_kernel(int64_t rows, int64_t cols, float eps, const float* x,
                                     const float* alpha, const float* mean, const float* var,
                                     const float* p, const float* dy, float* dx, float* dalpha) {
  __shared__ float smem[3 * kColumnBlockThreads];
  const int64_t tiles = (cols + blockDim.x - 1) / blockDim.x;
  const float inv_rows = 1.f / static_cast<float>(rows);
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * blockDim.x + threadIdx.x;
    const bool active = c < cols;
    float a = 0.f, m = 0.f, s = 0.f;
    float acc[3] = {0.f, 0.f, 0.f};  // sum g, sum g * xhat, sum dy * x * (1 - p)
    if (active) {
      a = alpha[c];
      m = mean[c];
      s = 1.f / sqrtf(var[c] + eps);
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) {
        const int64_t i = r * cols + c;
        const float xi = x[i], pi = p[i], d = dy[i];
        const float xhat = (xi - m) * s;
        const float g = d * xi * (1.f - a) * pi * (1.f - pi);
        acc[0] += g;
        acc[1] += g * xhat;
        acc[2] += d * xi * (1.f - pi);
      }
    }
    column_tree_sum(acc, smem);
    if (active) {
      const float mean_g = acc[0] * inv_rows, mean_g_xhat = acc[1] * inv_rows;
      for (int64_t r = threadIdx.y; r < rows; r += blockDim.y) {
        const int64_t i = r * cols + c;
        const float xi = x[i], pi = p[i], d = dy[i];
        const float xhat = (xi - m) * s;
        const float g = d * xi * (1.f - a) * pi * (1.f - pi);
        dx[i] = d * (a + pi * (1.f - a)) + s * (g - mean_g - xhat * mean_g_xhat);
      }
      if (threadIdx.y == 0) dalpha[c] += acc[2];
    }
  }
}

}  // namespace

void relu_forward(const Context& ctx, int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  relu_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "relu_forward");
}

void relu_backward(const Context& ctx, int64_t n, const float* x, const float* dy, float* dx) {
  if (n <= 0) return;
  relu_backward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, x, dy, dx);
  LOCKSTEP_KERNEL_CHECK(ctx, "relu_backward");
}

void leaky_relu_forward(const Context& ctx, int64_t n, float slope, const float* x, float* y) {
  if (n <= 0) return;
  leaky_relu_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, slope, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "leaky_relu_forward");
}

void leaky_relu_backward(const Context& ctx, int64_t n, float slope, const float* x,
                         const float* dy, float* dx) {
  if (n <= 0) return;
  leaky_relu_backward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, slope, x, dy, dx);
  LOCKSTEP_KERNEL_CHECK(ctx, "leaky_relu_backward");
}

void sigmoid_forward(const Context& ctx, int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  sigmoid_forward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "sigmoid_forward");
}

void sigmoid_backward(const Context& ctx, int64_t n, const float* y, const float* dy, float* dx) {
  if (n <= 0) return;
  sigmoid_backward_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, y, dy, dx);
  LOCKSTEP_KERNEL_CHECK(ctx, "sigmoid_backward");
}

void prelu_forward(const Context& ctx, int64_t rows, int64_t cols, const float* x,
                   const float* alpha, float* y) {
  if (rows <= 0 || cols <= 0) return;
  prelu_forward_kernel<<<grid_for(rows * cols), kBlock, 0, stream_of(ctx)>>>(rows, cols, x, alpha,
                                                                             y);
  LOCKSTEP_KERNEL_CHECK(ctx, "prelu_forward");
}

void prelu_backward(const Context& ctx, int64_t rows, int64_t cols, const float* x,
                    const float* alpha, const float* dy, float* dx, float* dalpha) {
  if (rows <= 0 || cols <= 0) return;
  const ColumnLaunch launch = column_launch(rows, cols);
  float* totals = column_totals_target(ctx, launch, cols, dalpha);
  prelu_backward_kernel<<<launch.grid, launch.block, 0, stream_of(ctx)>>>(
      rows, cols, launch.chunk_rows, x, alpha, dy, dx, totals);
  LOCKSTEP_KERNEL_CHECK(ctx, "prelu_backward");
  add_column_partials(ctx, launch, cols, totals, dalpha);
}

void dice_forward_train(const Context& ctx, int64_t rows, int64_t cols, float eps, const float* x,
                        const float* alpha, float* y, float* mean, float* var, float* p) {
  if (rows <= 0 || cols <= 0) return;
  const ColumnLaunch launch = column_launch(cols);
  dice_forward_train_kernel<<<launch.grid, launch.block, 0, stream_of(ctx)>>>(
      rows, cols, eps, x, alpha, y, mean, var, p);
  LOCKSTEP_KERNEL_CHECK(ctx, "dice_forward_train");
}

void dice_forward_infer(const Context& ctx, int64_t rows, int64_t cols, float eps, const float* x,
                        const float* alpha, const float* running_mean, const float* running_var,
                        float* y) {
  if (rows <= 0 || cols <= 0) return;
  dice_forward_infer_kernel<<<grid_for(rows * cols), kBlock, 0, stream_of(ctx)>>>(
      rows, cols, eps, x, alpha, running_mean, running_var, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "dice_forward_infer");
}

void dice_update_running(const Context& ctx, int64_t rows, int64_t cols, float momentum,
                         const float* mean, const float* var, float* running_mean,
                         float* running_var) {
  if (rows <= 0 || cols <= 0) return;  // an empty batch has no statistics
  const float unbias = rows > 1 ? static_cast<float>(rows) / static_cast<float>(rows - 1) : 1.f;
  dice_update_running_kernel<<<grid_for(cols), kBlock, 0, stream_of(ctx)>>>(
      cols, momentum, unbias, mean, var, running_mean, running_var);
  LOCKSTEP_KERNEL_CHECK(ctx, "dice_update_running");
}

void dice_backward(const Context& ctx, int64_t rows, int64_t cols, float eps, const float* x,
                   const float* alpha, const float* mean, const float* var, const float* p,
                   const float* dy, float* dx, float* dalpha) {
  if (rows <= 0 || cols <= 0) return;
  const ColumnLaunch launch = column_launch(cols);
  dice_backward_kernel<<<launch.grid, launch.block, 0, stream_of(ctx)>>>(
      rows, cols, eps, x, alpha, mean, var, p, dy, dx, dalpha);
  LOCKSTEP_KERNEL_CHECK(ctx, "dice_backward");
}

}  // namespace lockstep::kernels::cuda

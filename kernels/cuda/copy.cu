#include "kernels/copy.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {

namespace {
__global__ void add_2d_kernel(int64_t rows, int64_t cols, const float* src, int64_t ld_src,
                              float* dst, int64_t ld_dst) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    dst[r * ld_dst + c] += src[r * ld_src + c];
  }
}
__global__ void scale_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fmul_rn(alpha, x[i]);  // one rounding, as on the CPU
}
}  // namespace

void scale(const Context& ctx, int64_t n, float alpha, const float* x, float* y) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, alpha, x, y);
  LOCKSTEP_KERNEL_CHECK(ctx, "scale");
}

void copy_2d(const Context& ctx, int64_t rows, int64_t cols, const float* src, int64_t ld_src,
             float* dst, int64_t ld_dst, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  if (!accumulate) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpy2DAsync(dst, ld_dst * sizeof(float), src, ld_src * sizeof(float),
                                          cols * sizeof(float), rows, cudaMemcpyDeviceToDevice,
                                          stream_of(ctx)));
    return;
  }
  add_2d_kernel<<<grid_for(rows * cols), kBlock, 0, stream_of(ctx)>>>(rows, cols, src, ld_src, dst,
                                                                      ld_dst);
  LOCKSTEP_KERNEL_CHECK(ctx, "copy_2d(accumulate)");
}

}  // namespace lockstep::kernels::cuda

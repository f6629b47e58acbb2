#include "kernels/cuda/launch.cuh"
#include "kernels/init.h"
#include "lockstep/core/philox.h"

namespace lockstep::kernels::cuda {

namespace {
__global__ void fill_uniform_kernel(int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                                    float lo, float range, float* x) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float u = uniform01_from_u32(philox_u32(seed, stream, offset + uint64_t(i)));
    x[i] = __fmaf_rn(range, u, lo);  // same single rounding as std::fmaf on the CPU
  }
}

__global__ void fill_constant_kernel(int64_t n, float value, float* x) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}
}  // namespace

void fill_uniform(const Context& ctx, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                  float lo, float hi, float* x) {
  if (n <= 0) return;
  fill_uniform_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, seed, stream, offset, lo,
                                                                  hi - lo, x);
  LOCKSTEP_KERNEL_CHECK(ctx, "fill_uniform");
}

void fill_constant(const Context& ctx, int64_t n, float value, float* x) {
  if (n <= 0) return;
  fill_constant_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, value, x);
  LOCKSTEP_KERNEL_CHECK(ctx, "fill_constant");
}

}  // namespace lockstep::kernels::cuda

#include <cub/device/device_reduce.cuh>

#include "kernels/cuda/launch.cuh"
#include "kernels/reduce.h"

namespace lockstep::kernels::cuda {

// cub::DeviceReduce::Sum is run-to-run deterministic for floats on a given GPU: its tiling
// depends only on n and the device, and partial sums are combined in a fixed tree (no atomics).
// Temp storage comes from the context's workspace (size query, then run).
void sum(const Context& ctx, int64_t n, const float* x, float* out) {
  const cudaStream_t stream = stream_of(ctx);
  if (n <= 0) {
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), stream));  // 0.0f is all-zero bits
    return;
  }
  size_t temp_bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, temp_bytes, x, out, n, stream));
  // At least one byte: a null temp pointer would make CUB treat the second call as a size query.
  void* temp = ctx.workspace(std::max<size_t>(temp_bytes, 1));
  LOCKSTEP_CUDA_CHECK(cub::DeviceReduce::Sum(temp, temp_bytes, x, out, n, stream));
  LOCKSTEP_KERNEL_CHECK(ctx, "sum");
}

namespace {
__global__ void sum_blocks_kernel(int64_t n, int blocks, const float* x, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float total = x[i];
    for (int b = 1; b < blocks; ++b) total = __fadd_rn(total, x[b * n + i]);  // never contracted
    out[i] = total;
  }
}
}  // namespace

void sum_blocks(const Context& ctx, int64_t n, int blocks, const float* x, float* out) {
  if (n <= 0) return;
  sum_blocks_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, blocks, x, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "sum_blocks");
}

}  // namespace lockstep::kernels::cuda

// CUDA dropout (kernels/dropout.h), float: the same Philox counter, uniform and scale as the
// CPU, so the two agree bitwise. Sizes and p are validated by the dispatcher.

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/dropout.h"
#include "lockstep/core/philox.h"

namespace lockstep::kernels::cuda {

namespace {

// out_i = keep_i ? in_i · scale : 0 with keep_i = uniform01(philox(seed, stream, c + i)) >= p,
// c = *base + offset (base read here, when the kernel runs: a replayed graph draws afresh): the
// same counter, the same 24-bit uniform compared with the same float p and the same float scale
// as the CPU, and a correctly rounded multiply, so the two agree bitwise.
__global__ void dropout_kernel(int64_t n, float p, float scale, uint64_t seed, const uint64_t* base,
                               uint64_t offset, const float* in, float* out) {
  if (base != nullptr) offset += *base;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float u = uniform01_from_u32(philox_u32(seed, kDropoutStream, offset + uint64_t(i)));
    out[i] = u >= p ? __fmul_rn(in[i], scale) : 0.f;
  }
}

void run_dropout(const Context& ctx, const char* op, int64_t n, float p, uint64_t seed,
                 const uint64_t* base, uint64_t offset, const float* in, float* out) {
  if (n == 0) return;
  if (p == 0.0f) {
    if (out != in)
      LOCKSTEP_CUDA_CHECK(
          cudaMemcpyAsync(out, in, floats(n), cudaMemcpyDeviceToDevice, stream_of(ctx)));
    return;
  }
  const float scale = 1.0f / (1.0f - p);  // host IEEE float division, as on the CPU
  dropout_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, p, scale, seed, base, offset, in,
                                                             out);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

}  // namespace

void dropout_forward(const Context& ctx, int64_t n, float p, uint64_t seed, const uint64_t* base,
                     uint64_t offset, const float* x, float* y) {
  run_dropout(ctx, "dropout_forward", n, p, seed, base, offset, x, y);
}

void dropout_backward(const Context& ctx, int64_t n, float p, uint64_t seed, const uint64_t* base,
                      uint64_t offset, const float* dy, float* dx) {
  run_dropout(ctx, "dropout_backward", n, p, seed, base, offset, dy, dx);
}

}  // namespace lockstep::kernels::cuda

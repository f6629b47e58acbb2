#include "kernels/cuda/launch.cuh"
#include "kernels/loss.h"

namespace lockstep::kernels::cuda {

namespace {
// logits, labels, loss, dlogits: (n). loss / dlogits may be nullptr (output skipped).
// Same overflow-free formulation as the CPU reference (kernels/cpu/loss.cpp).
__global__ void bce_with_logits_kernel(int64_t n, const float* logits, const float* labels,
                                       float grad_scale, float* loss, float* dlogits) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = logits[i], t = labels[i];
    const float e = expf(-fabsf(x));  // in (0, 1]
    if (loss) loss[i] = fmaxf(x, 0.f) - x * t + log1pf(e);
    if (dlogits) {
      const float sig = x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
      dlogits[i] = grad_scale * (sig - t);
    }
  }
}
}  // namespace

void bce_with_logits(const Context& ctx, int64_t n, const float* logits, const float* labels,
                     float grad_scale, float* loss, float* dlogits) {
  if (n <= 0 || (loss == nullptr && dlogits == nullptr)) return;
  bce_with_logits_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(n, logits, labels, grad_scale,
                                                                     loss, dlogits);
  LOCKSTEP_KERNEL_CHECK(ctx, "bce_with_logits");
}

}  // namespace lockstep::kernels::cuda

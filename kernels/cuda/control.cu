#include "kernels/control.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {

namespace {
__global__ void encode_count_chunks_kernel(const int64_t* value, float* chunks) {
  const int c = threadIdx.x;
  if (c >= 4) return;
  const uint64_t v = value[0] < 0 ? 0 : static_cast<uint64_t>(value[0]);
  chunks[c] = static_cast<float>((v >> (16 * c)) & 0xffffu);
}
}  // namespace

void encode_count_chunks(const Context& ctx, const int64_t* value, float* chunks) {
  encode_count_chunks_kernel<<<1, 32, 0, stream_of(ctx)>>>(value, chunks);
  LOCKSTEP_KERNEL_CHECK(ctx, "encode_count_chunks");
}

}  // namespace lockstep::kernels::cuda

#include "kernels/control.h"
#include "kernels/cuda/launch.cuh"
#include "lockstep/core/device_error.h"

namespace lockstep::kernels::cuda {

namespace {
__global__ void encode_count_chunks_kernel(const int64_t* value, float* chunks) {
  const int c = threadIdx.x;
  if (c >= 4) return;
  const uint64_t v = value[0] < 0 ? 0 : static_cast<uint64_t>(value[0]);
  chunks[c] = static_cast<float>((v >> (16 * c)) & 0xffffu);
}

// Stream order makes every earlier kernel's record visible here.
__global__ void flag_device_error_kernel(const DeviceErrorRecord* record, float value,
                                         float* status) {
  const volatile DeviceErrorRecord* r = record;
  if (threadIdx.x == 0 && r->code != 0) *status = value;
}

__global__ void write_u64_kernel(uint64_t value, uint64_t* out) {
  if (threadIdx.x == 0) *out = value;
}
}  // namespace

void encode_count_chunks(const Context& ctx, const int64_t* value, float* chunks) {
  encode_count_chunks_kernel<<<1, 32, 0, stream_of(ctx)>>>(value, chunks);
  LOCKSTEP_KERNEL_CHECK(ctx, "encode_count_chunks");
}

void flag_device_error(const Context& ctx, float value, float* status) {
  flag_device_error_kernel<<<1, 32, 0, stream_of(ctx)>>>(ctx.device_error(), value, status);
  LOCKSTEP_KERNEL_CHECK(ctx, "flag_device_error");
}

void write_u64(const Context& ctx, uint64_t value, uint64_t* out) {
  write_u64_kernel<<<1, 32, 0, stream_of(ctx)>>>(value, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "write_u64");
}

}  // namespace lockstep::kernels::cuda

#pragma once
// Writing device-resident step values into the lockstep control block without a host read.

#include "kernels/common.h"

namespace lockstep::kernels {

// chunks[c] = float((value[0] >> 16c) & 0xffff) for c = 0..3: a count (>= 0) held in ONE int64
// of ctx's device memory, written as the control block's four exact 16-bit chunks (the same
// encoding as train::put_u64_chunks on the host). A negative count is written as 0.
LOCKSTEP_KERNEL_IMPLS(encode_count_chunks, const Context& ctx, const int64_t* value, T* chunks)
template <class T>
void encode_count_chunks(const Context& ctx, const int64_t* value, T* chunks) {
  LOCKSTEP_CHECK(value != nullptr && chunks != nullptr, "encode_count_chunks: null pointer");
  LOCKSTEP_DISPATCH(T, ctx, encode_count_chunks, value, chunks);
}

// *status = value when a kernel launched on ctx has recorded invalid input that is not
// reported yet (ctx's device error record, lockstep/core/device_error.h); unchanged otherwise.
// The lockstep step uses it to mark its control-block slot failed on the device, so that every
// rank learns of the failure from the step's one collective without a host read here. A no-op
// on the CPU, whose kernels throw at once.
LOCKSTEP_KERNEL_IMPLS(flag_device_error, const Context& ctx, T value, T* status)
template <class T>
void flag_device_error(const Context& ctx, T value, T* status) {
  LOCKSTEP_CHECK(status != nullptr, "flag_device_error: null pointer");
  LOCKSTEP_DISPATCH(T, ctx, flag_device_error, value, status);
}

// *out = value: one uint64 in ctx's memory written in stream order, without a host copy (the
// device base of the context's random stream, Context::sync_random_base). T is unused.
LOCKSTEP_KERNEL_IMPLS(write_u64, const Context& ctx, uint64_t value, uint64_t* out)
template <class T>
void write_u64(const Context& ctx, uint64_t value, uint64_t* out) {
  LOCKSTEP_CHECK(out != nullptr, "write_u64: null pointer");
  LOCKSTEP_DISPATCH(T, ctx, write_u64, value, out);
}

}  // namespace lockstep::kernels

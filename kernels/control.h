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

}  // namespace lockstep::kernels

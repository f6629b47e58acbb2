#pragma once
// Internal: sequence lengths on the device. They cannot be validated without a synchronisation,
// so the kernels clamp them, and a bad length can never read or write out of bounds.

#include <cstdint>

namespace lockstep::kernels::cuda {

/// len clamped to [0, max].
__device__ __forceinline__ int64_t clamp_length(int64_t len, int64_t max) {
  return len < 0 ? 0 : (len > max ? max : len);
}

}  // namespace lockstep::kernels::cuda

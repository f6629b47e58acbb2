#pragma once
// Internal helpers for CUDA kernel launchers.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "kernels/common.h"

namespace lockstep::kernels::cuda {

using ::lockstep::detail::cublas_of;
using ::lockstep::detail::stream_of;

constexpr int kBlock = 256;

/// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(int64_t n, int block = kBlock) {
  const int64_t blocks = ceil_div(std::max<int64_t>(n, 1), block);
  return static_cast<unsigned>(std::min<int64_t>(blocks, 65535LL * 8));
}

}  // namespace lockstep::kernels::cuda

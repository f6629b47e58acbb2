#pragma once
// Internal: warp-level helpers of the "one warp per row" CUDA kernels.
//
// Reductions over the 32 lanes of a warp use a fixed xor butterfly: the order of the additions
// depends neither on scheduling nor on the run, and because float addition is commutative every
// lane ends with the bitwise-same total. All lanes of the warp must call them (full mask).

#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

/// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

/// Maximum over the 32 lanes of a warp; every lane gets it.
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

/// Blocks for the "one warp per row" kernels (grid-stride over rows).
inline unsigned warp_grid(int64_t rows) { return grid_for(rows * kWarp); }

/// The grid-stride loop of the "one warp per row" kernels, each warp of the grid taking rows
/// first_warp_row(), first_warp_row() + warp_row_stride(), ...; the lane is threadIdx.x % kWarp.
__device__ __forceinline__ int64_t first_warp_row() {
  return blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
}
__device__ __forceinline__ int64_t warp_row_stride() {
  return int64_t(gridDim.x) * (blockDim.x / kWarp);
}

}  // namespace lockstep::kernels::cuda

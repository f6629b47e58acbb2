#pragma once
// Internal: deterministic per-column reductions over (rows, cols) row-major matrices, shared by
// the bias, PReLU and Dice kernels.
//
// One block owns a tile of adjacent columns and ALL rows of those columns: blockDim.x threads
// cover the tile's columns (consecutive threads, consecutive addresses: coalesced), blockDim.y
// threads stride over the rows. Each thread sums its fixed set of rows {ty, ty + by, ...} in
// order, then the block combines the by partial sums with a fixed shared-memory tree. No
// atomics, no dependence on scheduling: for a given (rows, cols) the result is identical run to
// run. Because a block sees whole columns, kernels can use a column's total (a mean, a variance)
// and go on to write elementwise outputs in the same launch.
//
// Parallelism is one block per tile, so a (4096, 80) matrix uses 10 blocks. That is enough for
// the layer widths of the benchmark models, where these kernels are a small part of the step;
// splitting rows over blocks would need a second, fixed-order pass over per-block partials.

#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {

/// Threads per column-reduction block (a power of two).
constexpr int kColumnBlockThreads = 512;
/// Widest column tile: 8 floats = 32 bytes, one DRAM sector per row segment, so narrower tiles
/// than a warp lose no bandwidth and give 4x more blocks for the typical 40..200-column layers.
constexpr int kMaxTileWidth = 8;

struct ColumnLaunch {
  dim3 block;     // (tile width, kColumnBlockThreads / tile width)
  unsigned grid;  // column tiles, capped; kernels loop over tiles with a grid stride
};

/// Tile width = the smallest power of two >= cols, at most kMaxTileWidth: narrow matrices
/// (cols = 1 for a logit column) put all threads on the rows instead of idling.
inline ColumnLaunch column_launch(int64_t cols) {
  int width = 1;
  while (width < kMaxTileWidth && width < cols) width *= 2;
  const int64_t tiles = ceil_div(std::max<int64_t>(cols, 1), width);
  return {dim3(static_cast<unsigned>(width), static_cast<unsigned>(kColumnBlockThreads / width)),
          static_cast<unsigned>(std::min<int64_t>(tiles, 65535LL * 8))};
}

/// Replaces each v[k] by its sum over threadIdx.y (the rows handled by this tile column),
/// combined in a fixed tree order. Every thread of the block must call it (it synchronises);
/// smem holds K * blockDim.x * blockDim.y floats. On return every thread holds the totals of
/// its column and smem may be reused.
template <int K>
__device__ inline void column_tree_sum(float (&v)[K], float* smem) {
  const unsigned tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  for (int k = 0; k < K; ++k) smem[(k * by + ty) * bx + tx] = v[k];
  __syncthreads();
  for (unsigned stride = by / 2; stride > 0; stride /= 2) {
    if (ty < stride)
      for (int k = 0; k < K; ++k)
        smem[(k * by + ty) * bx + tx] += smem[(k * by + ty + stride) * bx + tx];
    __syncthreads();
  }
  for (int k = 0; k < K; ++k) v[k] = smem[k * by * bx + tx];
  __syncthreads();
}

}  // namespace lockstep::kernels::cuda

#pragma once
// Internal: deterministic per-column reductions over (rows, cols) row-major matrices, shared by
// the bias, PReLU and Dice kernels.
//
// A block owns a tile of adjacent columns and a chunk of rows of those columns: blockDim.x
// threads cover the tile's columns (consecutive threads, consecutive addresses: coalesced),
// blockDim.y threads stride over the chunk's rows. Each thread sums its fixed set of rows
// {r0 + ty, r0 + ty + by, ...} in order, then the block combines the by partial sums with a
// fixed shared-memory tree. With one chunk (few rows) the block adds its totals to the output;
// with several, each block writes its chunk's totals to a (chunks, cols) matrix of partials in
// ctx.reduce_scratch() and a second launch (add_column_partials: one chunk) adds them to the
// output by the same fixed tree. The chunks depend on (rows, cols) only, never on the device:
// no atomics, no dependence on scheduling, identical results run to run and across GPUs.
//
// Until 2026-12-03 a block owned all rows of its tile, so the (204800, 80) PReLU gradient of
// DIN's unit at batch 4096 ran on 10 blocks of a 132-SM GPU: the emulator's memory-access
// profile (emu/profile_report.py) put it at three quarters of din-bench's device time. Chunks
// of 4 rows per thread give it 10 column tiles x 800 chunks of 256 rows.
//
// Kernels that need a column's total before they write their elementwise outputs (a mean, a
// variance: Dice) keep one chunk (column_launch(cols)).

#include <limits>

#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {

/// Threads per column-reduction block (a power of two).
constexpr int kColumnBlockThreads = 512;
/// Widest column tile: 8 floats = 32 bytes, one DRAM sector per row segment, so narrower tiles
/// than a warp lose no bandwidth and give 4x more blocks for the typical 40..200-column layers.
constexpr int kMaxTileWidth = 8;

/// Rows each thread sums per chunk: chunks of kRowsPerThread * blockDim.y rows.
constexpr int kRowsPerThread = 4;

struct ColumnLaunch {
  dim3 block;          // (tile width, kColumnBlockThreads / tile width)
  dim3 grid;           // x: column tiles, capped (kernels loop over tiles with a grid stride);
                       // y: row chunks
  int64_t chunk_rows;  // rows per chunk
  int64_t chunks() const { return grid.y; }
};

/// Tile width = the smallest power of two >= cols, at most kMaxTileWidth: narrow matrices
/// (cols = 1 for a logit column) put all threads on the rows instead of idling. rows < 0: one
/// chunk, whatever the rows.
inline ColumnLaunch column_launch(int64_t rows, int64_t cols) {
  int width = 1;
  while (width < kMaxTileWidth && width < cols) width *= 2;
  const int64_t tiles = ceil_div(std::max<int64_t>(cols, 1), width);
  const int64_t by = kColumnBlockThreads / width;
  int64_t chunk_rows = std::numeric_limits<int64_t>::max();
  if (rows >= 0) {
    chunk_rows = by * kRowsPerThread;
    const int64_t most = 65535;  // grid.y's limit
    if (ceil_div(std::max<int64_t>(rows, 1), chunk_rows) > most)
      chunk_rows = ceil_div(ceil_div(rows, most), by) * by;
  }
  const int64_t chunks = rows >= 0 ? ceil_div(std::max<int64_t>(rows, 1), chunk_rows) : 1;
  return {dim3(static_cast<unsigned>(width), static_cast<unsigned>(by)),
          dim3(static_cast<unsigned>(std::min<int64_t>(tiles, 65535LL * 8)),
               static_cast<unsigned>(chunks)),
          chunk_rows};
}
/// One chunk of all rows, for kernels that need whole columns.
inline ColumnLaunch column_launch(int64_t cols) { return column_launch(-1, cols); }

/// This block's rows: [*begin, *end).
__device__ inline void chunk_rows_of(int64_t rows, int64_t chunk_rows, int64_t* begin,
                                     int64_t* end) {
  *begin = blockIdx.y * chunk_rows;
  *end = *begin + chunk_rows < rows ? *begin + chunk_rows : rows;
}

/// A column total of this block's chunk: added to out[c] with one chunk, else written to the
/// partials out[chunk * cols + c].
__device__ inline void store_column_total(float* out, int64_t cols, int64_t c, float v) {
  if (gridDim.y == 1)
    out[c] += v;
  else
    out[blockIdx.y * cols + c] = v;
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

/// Where a column kernel launched with `l` writes its totals: `out` itself with one chunk, else
/// (chunks, cols) partials in ctx.reduce_scratch().
inline float* column_totals_target(const Context& ctx, const ColumnLaunch& l, int64_t cols,
                                   float* out) {
  if (l.chunks() == 1) return out;
  return static_cast<float*>(
      ctx.reduce_scratch(static_cast<size_t>(l.chunks() * cols) * sizeof(float)));
}

/// out (cols) += the sums over chunks of the partials a column kernel launched with `l` wrote
/// to column_totals_target(ctx, l, cols, out); nothing with one chunk.
void add_column_partials(const Context& ctx, const ColumnLaunch& l, int64_t cols,
                         const float* partials, float* out);

}  // namespace lockstep::kernels::cuda

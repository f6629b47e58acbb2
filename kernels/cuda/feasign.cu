// A dynamic table's row work (kernels/feasign.h): one thread per element or per sample, the
// CPU reference's arithmetic in its order. An index out of range (none is expected: the host
// computes every index from its own key index) is skipped and recorded in the context's device
// error record (kernels/cuda/input_errors.cuh), which the host reports with the CPU's message.
#include <cub/cub.cuh>

#include "kernels/cuda/input_errors.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/feasign.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::kernels::cuda {

namespace {
__global__ void gather_rows_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                   const float* __restrict__ src, int64_t ld_src, int64_t src_rows,
                                   const int64_t* __restrict__ index, float* __restrict__ dst,
                                   int64_t ld_dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, d = e % dim, r = index[i];
    if (r >= src_rows && d == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, r, src_rows,
                         static_cast<int64_t>(RowArray::Index));
    dst[i * ld_dst + d] = r >= 0 && r < src_rows ? src[r * ld_src + d] : 0.0f;
  }
}

__global__ void fill_rows_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                 const int64_t* __restrict__ index, float value,
                                 float* __restrict__ dst, int64_t ld, int64_t dst_rows) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, r = index[i];
    if (r >= 0 && r < dst_rows)
      dst[r * ld + e % dim] = value;
    else if (e % dim == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, r, dst_rows,
                         static_cast<int64_t>(RowArray::Index));
  }
}

__global__ void feasign_init_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                    const uint64_t* __restrict__ keys,
                                    const int64_t* __restrict__ slots, uint64_t seed,
                                    uint64_t stream, float scale, float* __restrict__ embedx,
                                    int64_t rows) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, d = e % dim, s = slots[i];
    if (s >= 0 && s < rows)
      embedx[s * dim + d] = embedding::feasign_init_value(seed, stream, keys[i], d, scale);
    else if (d == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, s, rows,
                         static_cast<int64_t>(RowArray::Slots));
  }
}

__global__ void wide_forward_kernel(ErrorSink sink, int64_t batch, int64_t per_sample,
                                    const int64_t* __restrict__ offsets,
                                    const uint64_t* __restrict__ ids, const float* __restrict__ lr,
                                    int64_t lr_rows, float* __restrict__ out) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < batch;
       b += int64_t(gridDim.x) * blockDim.x) {
    float acc = out[b];
    for (int64_t i = b * per_sample; i < (b + 1) * per_sample; ++i)
      for (int64_t j = offsets[i]; j < offsets[i + 1]; ++j) {
        if (ids[j] < static_cast<uint64_t>(lr_rows))
          acc += lr[ids[j]];
        else
          record_input_error(sink, InputError::IdOutOfRange, j, j, static_cast<int64_t>(ids[j]), b,
                             lr_rows);
      }
    out[b] = acc;
  }
}

// The same sums with one warp per sample, for fields of many positions (sequences): a sample's
// ids are one contiguous range (its bags are consecutive), which the lanes load 32 at a time;
// the values then join the running sum in position order (shuffled to every lane one by one),
// so the bits are the one-thread kernel's and the CPU's.
__global__ void wide_forward_warp_kernel(ErrorSink sink, int64_t batch, int64_t per_sample,
                                         const int64_t* __restrict__ offsets,
                                         const uint64_t* __restrict__ ids,
                                         const float* __restrict__ lr, int64_t lr_rows,
                                         float* __restrict__ out) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  for (int64_t b = first_warp_row(); b < batch; b += warp_row_stride()) {
    const int64_t begin = offsets[b * per_sample], end = offsets[(b + 1) * per_sample];
    float acc = lane == 0 ? out[b] : 0.0f;  // lane 0's sum is the one written
    for (int64_t base = begin; base < end; base += kWarp) {
      const int64_t j = base + lane;
      float v = 0.0f;
      if (j < end) {
        if (ids[j] < static_cast<uint64_t>(lr_rows))
          v = lr[ids[j]];
        else
          record_input_error(sink, InputError::IdOutOfRange, j, j, static_cast<int64_t>(ids[j]), b,
                             lr_rows);
      }
      const int n = static_cast<int>(end - base < kWarp ? end - base : kWarp);
      for (int k = 0; k < n; ++k) acc += __shfl_sync(kFullMask, v, k);
    }
    if (lane == 0) out[b] = acc;
  }
}

// unique_keys: positions sorted by key (stable: equal keys keep position order), run heads
// flagged; the heads up to a position (the exclusive sum plus its own flag) less one number
// its key.
// Before a batch's distinct keys are made, one launch: the count, the keys up to `room` and the
// run starts up to room + 1 zero, and pos[i] = i for i < n (the sort's values).
__global__ void prepare_unique_kernel(int64_t n, int64_t room, int* __restrict__ pos,
                                      uint64_t* __restrict__ keys, int64_t* __restrict__ starts,
                                      int64_t* __restrict__ count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i <= room;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i < n) pos[i] = static_cast<int>(i);
    if (i < room) keys[i] = 0;
    starts[i] = 0;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) *count = 0;
}
__global__ void run_heads_kernel(int64_t n, const uint64_t* __restrict__ sorted,
                                 int* __restrict__ head) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    head[i] = i == 0 || sorted[i] != sorted[i - 1] ? 1 : 0;
}
// Each sorted position sends its id to its key's number; each run's head writes the key and the
// run's start; the last position writes the count and the end of the last run.
__global__ void unique_scatter_kernel(int64_t n, const uint64_t* __restrict__ sorted,
                                      const int* __restrict__ order, const int* __restrict__ head,
                                      const int* __restrict__ u, uint64_t* __restrict__ ids,
                                      uint64_t* __restrict__ keys, int64_t* __restrict__ starts,
                                      int64_t* __restrict__ count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t run = u[i] + head[i] - 1;  // heads up to i, less one: its key's number
    ids[order[i]] = static_cast<uint64_t>(run);
    if (i == n - 1) {
      *count = run + 1;
      starts[run + 1] = n;
    }
    if (!head[i]) continue;
    keys[run] = sorted[i];
    starts[run] = i;
  }
}

__global__ void bag_stats_kernel(int64_t n, int64_t repeat, const float* __restrict__ labels,
                                 const float* __restrict__ dwide, float* __restrict__ dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * repeat * 3;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / (3 * repeat);
    const int c = static_cast<int>(e % 3);
    const float* column = c == 1 ? labels : dwide;
    dst[e] = c == 0 ? 1.0f : column != nullptr ? column[i] : 0.0f;
  }
}
}  // namespace

void gather_rows(const Context& ctx, int64_t n, int64_t dim, const float* src, int64_t ld_src,
                 int64_t src_rows, const int64_t* index, float* dst, int64_t ld_dst) {
  gather_rows_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "gather_rows"), n, dim, src, ld_src, src_rows, index, dst, ld_dst);
  LOCKSTEP_KERNEL_CHECK(ctx, "gather_rows");
}

void fill_rows(const Context& ctx, int64_t n, int64_t dim, const int64_t* index, float value,
               float* dst, int64_t ld, int64_t dst_rows) {
  fill_rows_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "fill_rows"), n, dim, index, value, dst, ld, dst_rows);
  LOCKSTEP_KERNEL_CHECK(ctx, "fill_rows");
}

void feasign_init_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* keys,
                       const int64_t* slots, uint64_t seed, uint64_t stream, float scale,
                       float* embedx, int64_t rows) {
  feasign_init_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "feasign_init_rows"), n, dim, keys, slots, seed, stream, scale, embedx, rows);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_init_rows");
}

void wide_lookup_forward(const Context& ctx, int64_t batch, int64_t per_sample,
                         const int64_t* offsets, const uint64_t* ids, const float* lr,
                         int64_t lr_rows, float* out) {
  if (per_sample >= 4)  // a sequence field: lanes load a sample's positions together
    wide_forward_warp_kernel<<<warp_grid(batch), kBlock, 0, stream_of(ctx)>>>(
        error_sink(ctx, "wide_lookup_forward"), batch, per_sample, offsets, ids, lr, lr_rows, out);
  else
    wide_forward_kernel<<<grid_for(batch), kBlock, 0, stream_of(ctx)>>>(
        error_sink(ctx, "wide_lookup_forward"), batch, per_sample, offsets, ids, lr, lr_rows, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "wide_lookup_forward");
}

void unique_keys(const Context& ctx, int64_t nnz, int64_t room, uint64_t* ids, uint64_t* keys,
                 int64_t* count, int* order, int64_t* starts) {
  const cudaStream_t stream = stream_of(ctx);
  size_t sort_bytes = 0, scan_bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), nnz, 0, 64, stream));
  LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes,
                                                    static_cast<const int*>(nullptr),
                                                    static_cast<int*>(nullptr), nnz, stream));
  const size_t n = static_cast<size_t>(nnz);
  WorkspaceLayout layout;
  const size_t in_at = layout.reserve(n * sizeof(int)),
               sorted_at = layout.reserve(n * sizeof(uint64_t)),
               head_at = layout.reserve(n * sizeof(int)), u_at = layout.reserve(n * sizeof(int)),
               temp_at = layout.reserve(std::max(sort_bytes, scan_bytes));
  void* base = ctx.workspace(layout.bytes());
  auto* in = at<int>(base, in_at);
  auto* sorted = at<uint64_t>(base, sorted_at);
  auto* head = at<int>(base, head_at);
  auto* u = at<int>(base, u_at);
  void* temp = at<void>(base, temp_at);
  prepare_unique_kernel<<<grid_for(room + 1), kBlock, 0, stream>>>(nnz, room, in, keys, starts,
                                                                   count);
  LOCKSTEP_KERNEL_CHECK(ctx, "unique_keys");
  if (nnz == 0) return;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, sort_bytes, ids, sorted, in, order, nnz,
                                                      0, 64, stream));
  run_heads_kernel<<<grid_for(nnz), kBlock, 0, stream>>>(nnz, sorted, head);
  LOCKSTEP_KERNEL_CHECK(ctx, "unique_keys");
  LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, scan_bytes, head, u, nnz, stream));
  unique_scatter_kernel<<<grid_for(nnz), kBlock, 0, stream>>>(nnz, sorted, order, head, u, ids,
                                                              keys, starts, count);
  LOCKSTEP_KERNEL_CHECK(ctx, "unique_keys");
}

void feasign_bag_stats(const Context& ctx, int64_t n, int64_t repeat, const float* labels,
                       const float* dwide, float* dst) {
  bag_stats_kernel<<<grid_for(n * repeat * 3), kBlock, 0, stream_of(ctx)>>>(n, repeat, labels,
                                                                            dwide, dst);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_bag_stats");
}

}  // namespace lockstep::kernels::cuda

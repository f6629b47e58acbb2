// CUDA pooled embedding lookup (kernels/embedding.h), float.
//
// Bitwise parity with the CPU reference (kernels/cpu/embedding.cpp) is part of the contract, so
// every floating-point operation here is spelled with an explicit round-to-nearest intrinsic
// (__fadd_rn, __fmul_rn, __fdiv_rn): nvcc can neither contract them into FMAs nor replace them
// under fast-math flags, and they are exactly the IEEE operations the CPU loops perform.
//
// Invalid input (offsets that are not a CSR, ids >= rows) is checked as the CPU reference checks
// it, recorded in the context's device error record (kernels/cuda/input_errors.cuh) and skipped:
// the host throws the CPU's message at its next read, and nothing is read or written out of
// bounds meanwhile.

#include <cub/cub.cuh>

#include <climits>

#include "kernels/cuda/input_errors.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/embedding.h"

namespace lockstep::kernels::cuda {

static_assert(kHotLanes == kWarp, "a hot id's lanes are the lanes of one warp");

namespace {

// Threads that share one output row: the smallest power of two >= dim, at most a warp. Small
// dims (16 in the benchmark workloads) thus keep every lane busy; larger ones loop over dim.
int lanes_per_row(int64_t dim) {
  int lanes = 1;
  while (lanes < dim && lanes < 32) lanes *= 2;
  return lanes;
}

// The pooling factor of a bag of `len` ids, the same arithmetic as the CPU: 1/len rounded once.
__device__ __forceinline__ float bag_scale(Pooling pooling, int64_t len) {
  return pooling == Pooling::Mean && len > 0 ? __fdiv_rn(1.0f, static_cast<float>(len)) : 1.0f;
}

// One group of `lanes` threads per bag, lanes over dim. Each output element sums its bag's
// rows sequentially in increasing position order and applies the scale last, like the CPU.
// The CPU's checks of the CSR and the ids run here too, each bad element recorded in `sink`
// and skipped, so that bad input never reads outside `ids` or the table: a bag whose offsets
// are wrong is not written (nor one that lies outside [0, offsets[batch]] because other offsets
// are wrong); an id >= rows is left out of its bag's sum.
//   table: (rows, dim); offsets: (batch + 1); ids: (offsets[batch]); out: (batch, ld_out)
__global__ void pooled_lookup_forward_kernel(ErrorSink sink, Pooling pooling, int64_t batch,
                                             int64_t dim, int lanes,
                                             const float* __restrict__ table, int64_t rows,
                                             const int64_t* __restrict__ offsets,
                                             const uint64_t* __restrict__ ids,
                                             float* __restrict__ out, int64_t ld_out) {
  const int64_t rows_per_block = blockDim.x / lanes;
  const int lane = threadIdx.x % lanes;
  for (int64_t b = blockIdx.x * rows_per_block + threadIdx.x / lanes; b < batch;
       b += int64_t(gridDim.x) * rows_per_block) {
    const int64_t begin = offsets[b], end = offsets[b + 1];
    if (b == 0 && begin < 0) {  // a window of a larger CSR starts at >= 0
      if (lane == 0) record_input_error(sink, InputError::OffsetsStart, 0, begin, /*window=*/1);
      continue;
    }
    if (end < begin) {
      if (lane == 0) record_input_error(sink, InputError::OffsetsDecreasing, b, b, begin, end);
      continue;
    }
    // Offsets that go backwards elsewhere (recorded by that bag's threads) can put a valid-
    // looking bag before 0 or past offsets[batch], the length of `ids`: skip it unread.
    if (begin < 0 || end > offsets[batch]) continue;
    for (int64_t j = begin + lane; j < end; j += lanes) {
      if (ids[j] >= static_cast<uint64_t>(rows))
        record_input_error(sink, InputError::IdOutOfRange, j, j, static_cast<int64_t>(ids[j]), b,
                           rows);
    }
    const float scale = bag_scale(pooling, end - begin);
    float* out_row = out + b * ld_out;
    for (int64_t d = lane; d < dim; d += lanes) {
      float sum = 0.0f;
      for (int64_t j = begin; j < end; ++j) {
        const uint64_t id = ids[j];
        if (id < static_cast<uint64_t>(rows))
          sum = __fadd_rn(sum, table[static_cast<int64_t>(id) * dim + d]);
      }
      out_row[d] = __fmul_rn(sum, scale);
    }
  }
}

// bag_of[j] = the bag b with offsets[b] <= j < offsets[b + 1], by binary search: balanced work
// however long the bags are. Empty bags are never the answer (they contain no position). For
// invalid offsets the result is still a bag in [0, batch), so later reads stay in bounds.
// offsets == nullptr means one bag per position: bag_of[j] = j (merge_sparse_rows). Bags are
// int (the launcher checks batch and nnz fit), halving the radix sort's value traffic.
// The same launch runs the CPU's checks of the offsets (thread i checks bag i; thread 0 also
// offsets[0] == 0 and offsets[batch] == nnz, or <= nnz when padded), recording a failure in
// `sink`, so it is launched for max(nnz, batch) threads, even when nnz == 0. Padding positions
// (j >= offsets[batch]) get bag batch - 1: in bounds, and their segment is dropped later.
// With `scales` (Mean pooling), thread b < batch also writes bag b's pooling factor.
//   offsets: (batch + 1) or nullptr; bag_of: (nnz); scales: (batch) or nullptr
__global__ void position_bag_kernel(ErrorSink sink, int64_t batch,
                                    const int64_t* __restrict__ offsets, int64_t nnz, bool padded,
                                    int* __restrict__ bag_of, float* __restrict__ scales) {
  const int64_t threads = nnz > batch ? nnz : batch;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < threads;
       j += int64_t(gridDim.x) * blockDim.x) {
    if (offsets == nullptr) {
      bag_of[j] = static_cast<int>(j);
      continue;
    }
    if (j == 0 && offsets[0] != 0)
      record_input_error(sink, InputError::OffsetsStart, 0, offsets[0], /*window=*/0);
    if (j < batch && offsets[j + 1] < offsets[j])
      record_input_error(sink, InputError::OffsetsDecreasing, j, j, offsets[j], offsets[j + 1]);
    if (j < batch && scales != nullptr)
      scales[j] = bag_scale(Pooling::Mean, offsets[j + 1] - offsets[j]);
    if (j == 0 && (padded ? offsets[batch] > nnz : offsets[batch] != nnz))
      record_input_error(sink, InputError::OffsetsEnd, 0, batch, offsets[batch], nnz);
    if (j >= nnz) continue;
    int64_t lo = 0, hi = batch;  // offsets[lo] <= j < offsets[hi]
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (offsets[mid] <= j)
        lo = mid;
      else
        hi = mid;
    }
    bag_of[j] = static_cast<int>(lo);
  }
}

// keyed_lookup_backward: sorted_bag[k] = the bag of position order[k], for the k < offsets[batch]
// positions of the bags (the padding past them: bag 0, never summed). An order entry outside
// [0, offsets[batch]) is recorded and gets bag 0. Looking the bags up in position order first
// (position_bag_kernel: neighbouring threads search neighbouring positions) and gathering them
// here costs one scattered read per position instead of a scattered binary search.
//   order, bag_of, sorted_bag: (nnz)
__global__ void order_bags_kernel(ErrorSink sink, int64_t batch,
                                  const int64_t* __restrict__ offsets, int64_t nnz,
                                  const int* __restrict__ order, const int* __restrict__ bag_of,
                                  int* __restrict__ sorted_bag) {
  const int64_t total = offsets[batch] < nnz ? offsets[batch] : nnz;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < nnz;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = k < total ? order[k] : 0;
    if (p < 0 || p >= total) {
      if (k < total)
        record_input_error(sink, InputError::RowOutOfRange, k, k, p, total,
                           static_cast<int64_t>(RowArray::Order));
      sorted_bag[k] = 0;
      continue;
    }
    sorted_bag[k] = bag_of[p];
  }
}

// A padded batch (positions offsets[batch] .. nnz - 1 hold one id above every id of a bag): the
// padding is the last of the *num_unique sorted segments; it is dropped, so that every later
// kernel sees only the bags' ids, as in the unpadded call.
__global__ void drop_padding_kernel(int64_t batch, const int64_t* __restrict__ offsets, int64_t nnz,
                                    int64_t* __restrict__ num_unique) {
  const bool has_padding = offsets[batch] < nnz;
  if (has_padding && *num_unique > 0) --*num_unique;
}

// The segments: u < *num_unique (at most nnz) covers sorted positions starts[u] .. starts[u + 1]
// - 1, clamped to [0, nnz] so that a bad grouping (keyed_lookup_backward's, checked on the CPU)
// never reads out of bounds.
__device__ __forceinline__ int64_t segment_count(const int64_t* __restrict__ num_unique,
                                                 int64_t nnz) {
  const int64_t u = *num_unique;
  return u < 0 ? 0 : u > nnz ? nnz : u;
}
__device__ __forceinline__ void segment_bounds(const int64_t* __restrict__ starts, int64_t u,
                                               int64_t nnz, int64_t& begin, int64_t& end) {
  begin = min(max(starts[u], int64_t{0}), nnz);
  end = min(max(starts[u + 1], begin), nnz);
}

// The columns a segmented sum adds, per position of bag (row) b: first side_width Sum-pooled
// side columns, side[b, c]; then dim columns scale_b * g[b, d] (unscaled without scales). out:
// (>= num_unique, ld_out), row u = the sums over segment u's positions, columns in that order.
struct SegmentColumns {
  int64_t side_width;
  const float* side;  // (rows of g, side_width) or nullptr
  int64_t dim;
  const float* g;  // (rows, ld_g)
  int64_t ld_g;
  const float* scales;  // (rows) or nullptr
  float* out;
  int64_t ld_out;
  __host__ __device__ int64_t width() const { return side_width + dim; }
  // The term of row b in column c, the product rounded before it is added (the CPU's order).
  __device__ __forceinline__ float term(int b, int64_t c) const {
    if (c < side_width) return side[b * side_width + c];
    const float v = g[b * ld_g + (c - side_width)];
    return scales != nullptr ? __fmul_rn(v, scales[b]) : v;
  }
};

// Column c of sorted positions [begin, end) summed sequentially over their rows b = index[k].
__device__ __forceinline__ float sum_positions(int64_t begin, int64_t end, int64_t c,
                                               const int* __restrict__ index,
                                               const SegmentColumns& cols) {
  float sum = 0.0f;
  for (int64_t k = begin; k < end; ++k) sum = __fadd_rn(sum, cols.term(index[k], c));
  return sum;
}

// Segmented reduction over the grouped positions: one group of `lanes` threads per segment
// u < *num_unique, lanes over the columns. Segment u's positions are summed in their sorted
// order (increasing original position: the radix sorts are stable), each column sequentially,
// like the CPU. Hot segments (more than kHotChunk positions) are left to the two kernels below.
// Launched for the upper bound of nnz segments; groups past *num_unique exit at once.
//   index: (nnz) the row of each sorted position
__global__ void segment_sum_kernel(int lanes, int64_t nnz, const int64_t* __restrict__ num_unique,
                                   const int64_t* __restrict__ starts,
                                   const int* __restrict__ index, SegmentColumns cols) {
  const int64_t unique = segment_count(num_unique, nnz), width = cols.width();
  const int64_t rows_per_block = blockDim.x / lanes;
  const int lane = threadIdx.x % lanes;
  for (int64_t u = blockIdx.x * rows_per_block + threadIdx.x / lanes; u < unique;
       u += int64_t(gridDim.x) * rows_per_block) {
    int64_t begin, end;
    segment_bounds(starts, u, nnz, begin, end);
    if (end - begin > kHotChunk) continue;
    for (int64_t c = lane; c < width; c += lanes)
      cols.out[u * cols.ld_out + c] = sum_positions(begin, end, c, index, cols);
  }
}

// Hot segments, step 1: chunk_count[u] = the chunks of kHotChunk positions of a hot segment u, 0
// for the others and for u >= *num_unique (so that the scan over all nnz entries sums only
// these).
__global__ void hot_chunk_count_kernel(int64_t nnz, const int64_t* __restrict__ num_unique,
                                       const int64_t* __restrict__ starts,
                                       int64_t* __restrict__ chunk_count) {
  const int64_t unique = segment_count(num_unique, nnz);
  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < nnz;
       u += int64_t(gridDim.x) * blockDim.x) {
    int64_t begin = 0, end = 0;
    if (u < unique) segment_bounds(starts, u, nnz, begin, end);
    chunk_count[u] = end - begin > kHotChunk ? (end - begin + kHotChunk - 1) / kHotChunk : 0;
  }
}

// The hot segment that chunk c belongs to: the last u with chunk_start[u] <= c (segments without
// chunks share their start with the next segment, so the last one is the one that has chunks).
__device__ __forceinline__ int64_t hot_segment_of(int64_t c, int64_t unique,
                                                  const int64_t* __restrict__ chunk_start) {
  int64_t lo = 0, hi = unique;  // chunk_start[lo] <= c < chunk_start[hi] (hi: past the end)
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (chunk_start[mid] <= c)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// Hot segments, step 2: partial[c, :] = the sequential sum of chunk c's positions, one group of
// `lanes` threads per chunk (every chunk of every hot segment at once). Launched for the upper
// bound max_chunks; chunks past the total exit at once.
__global__ void hot_chunk_sum_kernel(int lanes, int64_t nnz, int64_t max_chunks,
                                     const int64_t* __restrict__ num_unique,
                                     const int64_t* __restrict__ starts,
                                     const int64_t* __restrict__ chunk_count,
                                     const int64_t* __restrict__ chunk_start,
                                     const int* __restrict__ index, SegmentColumns cols,
                                     float* __restrict__ partial) {
  const int64_t unique = segment_count(num_unique, nnz), width = cols.width();
  const int64_t total = chunk_start[nnz - 1] + chunk_count[nnz - 1];
  const int64_t rows_per_block = blockDim.x / lanes;
  const int lane = threadIdx.x % lanes;
  for (int64_t c = blockIdx.x * rows_per_block + threadIdx.x / lanes; c < max_chunks && c < total;
       c += int64_t(gridDim.x) * rows_per_block) {
    const int64_t u = hot_segment_of(c, unique, chunk_start);
    int64_t first, last;
    segment_bounds(starts, u, nnz, first, last);
    const int64_t begin = first + (c - chunk_start[u]) * kHotChunk;
    const int64_t end = min(begin + kHotChunk, last);
    for (int64_t d = lane; d < width; d += lanes)
      partial[c * width + d] = sum_positions(begin, end, d, index, cols);
  }
}

// Hot segments, step 3: one warp per (hot segment, column): lane l adds the chunk sums l, l + 32,
// ... in order, then the warp's xor butterfly (warp_sum). Warps are launched per (chunk, column)
// and only a hot segment's first chunk does the work, so the whole warp takes the same branch.
__global__ void hot_lane_sum_kernel(int64_t nnz, int64_t max_chunks,
                                    const int64_t* __restrict__ num_unique,
                                    const int64_t* __restrict__ chunk_count,
                                    const int64_t* __restrict__ chunk_start,
                                    const float* __restrict__ partial, SegmentColumns cols) {
  const int64_t unique = segment_count(num_unique, nnz), width = cols.width();
  const int64_t total = chunk_start[nnz - 1] + chunk_count[nnz - 1];
  const int lane = threadIdx.x % kWarp;
  for (int64_t w = first_warp_row(); w < max_chunks * width; w += warp_row_stride()) {
    const int64_t c = w / width, d = w % width;
    if (c >= total) continue;
    const int64_t u = hot_segment_of(c, unique, chunk_start);
    if (chunk_start[u] != c) continue;  // not the segment's first chunk
    float sum = 0.0f;
    for (int64_t j = lane; j < chunk_count[u]; j += kWarp)
      sum = __fadd_rn(sum, partial[(c + j) * width + d]);
    sum = warp_sum(sum);
    if (lane == 0) cols.out[u * cols.ld_out + d] = sum;
  }
}

// The op and its kernels, for error messages.
struct SegmentSumNames {
  const char* op;
  const char* position_bag;
  const char* segment_sum;
};
constexpr SegmentSumNames kBackwardNames = {"pooled_lookup_backward",
                                            "pooled_lookup_backward(position_bag)",
                                            "pooled_lookup_backward(segment_sum)"};
constexpr SegmentSumNames kKeyedNames = {"keyed_lookup_backward",
                                         "keyed_lookup_backward(position_bag)",
                                         "keyed_lookup_backward(segment_sum)"};
constexpr SegmentSumNames kMergeNames = {"merge_sparse_rows", "merge_sparse_rows(position_bag)",
                                         "merge_sparse_rows(segment_sum)"};

// The segmented sums of the positions grouped into *num_unique segments (starts: nnz + 1, the
// segment starts then the end), every column of a SegmentColumns in one set of launches. The
// hot segments' workspace, sized for `width` columns, is reserved in the caller's layout
// (reserve()) and bound to the workspace (bind()); run() then enqueues the sums.
class SegmentedSums {
 public:
  SegmentedSums(int64_t nnz, int64_t width, size_t scan_bytes)
      : nnz_(nnz),
        width_(width),
        may_be_hot_(nnz > kHotChunk && width > 0),
        // Each hot segment has at least kHotChunk + 1 positions and at most 2 chunks per
        // kHotChunk of them: <= 2 nnz / kHotChunk.
        max_chunks_(may_be_hot_ ? 2 * nnz / kHotChunk + 1 : 0),
        scan_bytes_(scan_bytes) {}
  void reserve(WorkspaceLayout& layout) {
    const size_t n = static_cast<size_t>(nnz_);
    count_at_ = layout.reserve(may_be_hot_ ? n * sizeof(int64_t) : 0);
    start_at_ = layout.reserve(may_be_hot_ ? n * sizeof(int64_t) : 0);
    partial_at_ = layout.reserve(floats(max_chunks_ * std::max<int64_t>(width_, 1)));
  }
  void bind(void* base, void* cub_temp) {
    chunk_count_ = at<int64_t>(base, count_at_);
    chunk_start_ = at<int64_t>(base, start_at_);
    partial_ = at<float>(base, partial_at_);
    cub_temp_ = cub_temp;
  }
  void run(const Context& ctx, const SegmentSumNames& names, const int64_t* num_unique,
           const int64_t* starts, const int* index, const SegmentColumns& cols) {
    const cudaStream_t stream = stream_of(ctx);
    const int64_t width = cols.width();
    LOCKSTEP_CHECK(width == width_, "{}: {} columns summed in room for {}", names.op, width,
                   width_);
    if (width == 0 || nnz_ == 0) return;
    const int lanes = lanes_per_row(width);
    segment_sum_kernel<<<grid_for(nnz_ * lanes), kBlock, 0, stream>>>(lanes, nnz_, num_unique,
                                                                      starts, index, cols);
    LOCKSTEP_KERNEL_CHECK(ctx, names.segment_sum);
    if (!may_be_hot_) return;
    hot_chunk_count_kernel<<<grid_for(nnz_), kBlock, 0, stream>>>(nnz_, num_unique, starts,
                                                                  chunk_count_);
    LOCKSTEP_KERNEL_CHECK(ctx, names.segment_sum);
    size_t temp_bytes = scan_bytes_;
    LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(cub_temp_, temp_bytes, chunk_count_,
                                                      chunk_start_, nnz_, stream));
    hot_chunk_sum_kernel<<<grid_for(max_chunks_ * lanes), kBlock, 0, stream>>>(
        lanes, nnz_, max_chunks_, num_unique, starts, chunk_count_, chunk_start_, index, cols,
        partial_);
    LOCKSTEP_KERNEL_CHECK(ctx, names.segment_sum);
    hot_lane_sum_kernel<<<warp_grid(max_chunks_ * width), kBlock, 0, stream>>>(
        nnz_, max_chunks_, num_unique, chunk_count_, chunk_start_, partial_, cols);
    LOCKSTEP_KERNEL_CHECK(ctx, names.segment_sum);
  }

 private:
  int64_t nnz_, width_;
  bool may_be_hot_;
  int64_t max_chunks_;
  size_t scan_bytes_;
  size_t count_at_ = 0, start_at_ = 0, partial_at_ = 0;
  int64_t* chunk_count_ = nullptr;
  int64_t* chunk_start_ = nullptr;
  float* partial_ = nullptr;
  void* cub_temp_ = nullptr;
};

// Bytes of cub::DeviceScan::ExclusiveSum over n int64 values.
size_t exclusive_sum_bytes(int64_t n, cudaStream_t stream) {
  size_t bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, static_cast<int64_t*>(nullptr),
                                                    static_cast<int64_t*>(nullptr), n, stream));
  return bytes;
}

// The offsets' checks of an empty batch (nnz == 0): still the CPU's.
void check_empty_bags(const Context& ctx, const SegmentSumNames& names, int64_t batch,
                      const int64_t* offsets, bool padded) {
  if (offsets == nullptr || batch == 0) return;
  position_bag_kernel<<<grid_for(batch), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, names.op), batch, offsets, 0, padded, nullptr, nullptr);
  LOCKSTEP_KERNEL_CHECK(ctx, names.position_bag);
}

// The sparse gradient of pooled_lookup_backward, and the row merge of merge_sparse_rows (one
// bag per position: offsets == nullptr, Sum pooling).
//
// Sort (id, bag) pairs whose input order is position order: the radix sort is stable, so for
// equal ids the bags come out in increasing position order, exactly the CPU's stable sort of
// (id, position) pairs, and the segmented sum needs no position -> bag lookup afterwards.
// Unique ids and their counts come from a run-length encoding of the sorted ids, segment starts
// from an exclusive scan of the counts. No step waits for the host: num_unique stays on the
// device and every later kernel reads it there. Sizes are validated by the dispatcher, the CSR
// by position_bag_kernel (into the context's device error record). Ids are not checked against
// a table here (there is none): the sparse optimizers check the unique ids they apply.
void sort_and_segment_sum(const Context& ctx, const SegmentSumNames& names, Pooling pooling,
                          int64_t batch, int64_t dim, const int64_t* offsets, const uint64_t* ids,
                          int64_t nnz, const float* dout, int64_t ld_dout, uint64_t* unique_ids,
                          float* grad_rows, int64_t* num_unique, int id_bits, bool padded) {
  // cub::DeviceRunLengthEncode counts items in int, and bags are sorted as int.
  LOCKSTEP_CHECK(nnz <= INT_MAX - 1, "{}: nnz={} ids in one batch exceeds the limit of {}",
                 names.op, nnz, INT_MAX - 1);
  LOCKSTEP_CHECK(batch <= INT_MAX, "{}: batch={} bags in one batch exceeds the limit of {}",
                 names.op, batch, INT_MAX);
  const cudaStream_t stream = stream_of(ctx);
  if (nnz == 0) {
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(num_unique, 0, sizeof(int64_t), stream));
    check_empty_bags(ctx, names, batch, offsets, padded);
    return;
  }

  // Temporary storage of the CUB calls (they run one after another, so they share it). The
  // size queries use exactly the argument types of the real calls below.
  size_t sort_bytes = 0, rle_bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, ids, static_cast<uint64_t*>(nullptr), static_cast<int*>(nullptr),
      static_cast<int*>(nullptr), nnz, 0, id_bits, stream));
  LOCKSTEP_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(
      nullptr, rle_bytes, static_cast<uint64_t*>(nullptr), unique_ids,
      static_cast<int64_t*>(nullptr), num_unique, static_cast<int>(nnz), stream));
  const size_t scan_bytes = exclusive_sum_bytes(nnz + 1, stream);
  const size_t cub_bytes = std::max({sort_bytes, rle_bytes, scan_bytes, size_t{1}});
  const size_t n = static_cast<size_t>(nnz);
  SegmentedSums sums(nnz, dim, scan_bytes);

  WorkspaceLayout layout;
  const size_t bag_at = layout.reserve(n * sizeof(int));             // bag of each position
  const size_t sorted_id_at = layout.reserve(n * sizeof(uint64_t));  // ids in sorted order
  const size_t sorted_bag_at = layout.reserve(n * sizeof(int));      // their bags
  const size_t count_at = layout.reserve((n + 1) * sizeof(int64_t));  // positions per unique id
  const size_t start_at = layout.reserve((n + 1) * sizeof(int64_t));  // first sorted position
  const size_t scale_at =
      layout.reserve(pooling == Pooling::Mean ? static_cast<size_t>(batch) * sizeof(float) : 0);
  sums.reserve(layout);
  const size_t cub_at = layout.reserve(cub_bytes);
  void* base = ctx.workspace(layout.bytes());
  int* bag_of = at<int>(base, bag_at);
  uint64_t* sorted_ids = at<uint64_t>(base, sorted_id_at);
  int* sorted_bag = at<int>(base, sorted_bag_at);
  int64_t* counts = at<int64_t>(base, count_at);
  int64_t* starts = at<int64_t>(base, start_at);
  float* scales = pooling == Pooling::Mean ? at<float>(base, scale_at) : nullptr;
  void* cub_temp = static_cast<char*>(base) + cub_at;
  sums.bind(base, cub_temp);

  position_bag_kernel<<<grid_for(std::max(nnz, batch)), kBlock, 0, stream>>>(
      error_sink(ctx, names.op), batch, offsets, nnz, padded, bag_of, scales);
  LOCKSTEP_KERNEL_CHECK(ctx, names.position_bag);

  size_t temp_bytes = sort_bytes;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_temp, temp_bytes, ids, sorted_ids, bag_of,
                                                      sorted_bag, nnz, 0, id_bits, stream));
  // Counts past num_unique are never written by the encoding but are read by the scan below
  // (its length must be known on the host): zero them so that it reads defined values.
  LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(counts, 0, (n + 1) * sizeof(int64_t), stream));
  temp_bytes = rle_bytes;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(cub_temp, temp_bytes, sorted_ids,
                                                         unique_ids, counts, num_unique,
                                                         static_cast<int>(nnz), stream));
  if (padded && offsets != nullptr) {
    drop_padding_kernel<<<1, 1, 0, stream>>>(batch, offsets, nnz, num_unique);
    LOCKSTEP_KERNEL_CHECK(ctx, names.segment_sum);
  }
  // starts: nnz + 1 entries, so that segment u ends where u + 1 starts (the last at the bags'
  // position count: the padding's count, past num_unique, is not summed).
  temp_bytes = scan_bytes;
  LOCKSTEP_CUDA_CHECK(
      cub::DeviceScan::ExclusiveSum(cub_temp, temp_bytes, counts, starts, nnz + 1, stream));
  sums.run(ctx, names, num_unique, starts, sorted_bag,
           SegmentColumns{0, nullptr, dim, dout, ld_dout, scales, grad_rows, dim});
}

}  // namespace

// Launched for dim == 0 too: the checks of offsets and ids do not depend on dim.
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const float* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, float* out, int64_t ld_out) {
  if (batch == 0) return;
  const int lanes = lanes_per_row(dim);
  pooled_lookup_forward_kernel<<<grid_for(batch * lanes), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "pooled_lookup_forward"), pooling, batch, dim, lanes, table, rows, offsets,
      ids, out, ld_out);
  LOCKSTEP_KERNEL_CHECK(ctx, "pooled_lookup_forward");
}

void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz,
                            const float* dout, int64_t ld_dout, uint64_t* unique_ids,
                            float* grad_rows, int64_t* num_unique, int id_bits, bool padded) {
  sort_and_segment_sum(ctx, kBackwardNames, pooling, batch, dim, offsets, ids, nnz, dout, ld_dout,
                       unique_ids, grad_rows, num_unique, id_bits, padded);
}

// The keys' runs came sorted from unique_keys: each position's bag (and the CSR's checks), each
// sorted position's bag, then the segmented sums — no sort, encoding or scan of the segments.
void keyed_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const int64_t* offsets, int64_t nnz, bool padded, const int* order,
                           const int64_t* starts, const int64_t* num_keys, const float* dout,
                           int64_t ld_dout, int64_t side_width, const float* side, float* rows,
                           int64_t ld_rows) {
  const SegmentSumNames& names = kKeyedNames;
  LOCKSTEP_CHECK(batch <= INT_MAX, "{}: batch={} bags in one batch exceeds the limit of {}",
                 names.op, batch, INT_MAX);
  const cudaStream_t stream = stream_of(ctx);
  if (nnz == 0) {
    check_empty_bags(ctx, names, batch, offsets, padded);
    return;
  }
  const size_t scan_bytes = exclusive_sum_bytes(nnz, stream);
  SegmentedSums sums(nnz, side_width + dim, scan_bytes);
  WorkspaceLayout layout;
  const size_t bag_at = layout.reserve(static_cast<size_t>(nnz) * sizeof(int));
  const size_t sorted_bag_at = layout.reserve(static_cast<size_t>(nnz) * sizeof(int));
  const size_t scale_at =
      layout.reserve(pooling == Pooling::Mean ? static_cast<size_t>(batch) * sizeof(float) : 0);
  sums.reserve(layout);
  const size_t cub_at = layout.reserve(std::max(scan_bytes, size_t{1}));
  void* base = ctx.workspace(layout.bytes());
  int* bag_of = at<int>(base, bag_at);
  int* sorted_bag = at<int>(base, sorted_bag_at);
  float* scales = pooling == Pooling::Mean ? at<float>(base, scale_at) : nullptr;
  sums.bind(base, at<void>(base, cub_at));
  position_bag_kernel<<<grid_for(std::max(nnz, batch)), kBlock, 0, stream>>>(
      error_sink(ctx, names.op), batch, offsets, nnz, padded, bag_of, scales);
  LOCKSTEP_KERNEL_CHECK(ctx, names.position_bag);
  order_bags_kernel<<<grid_for(nnz), kBlock, 0, stream>>>(error_sink(ctx, names.op), batch, offsets,
                                                          nnz, order, bag_of, sorted_bag);
  LOCKSTEP_KERNEL_CHECK(ctx, names.position_bag);
  sums.run(ctx, names, num_keys, starts, sorted_bag,
           SegmentColumns{side_width, side, dim, dout, ld_dout, scales, rows, ld_rows});
}

// Each row is a bag of one id with Sum pooling: the pooled-lookup backward's sort and segmented
// sum with bag_of[i] = i, so the merge gives the bits of that backward by construction.
void merge_sparse_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* ids,
                       const float* rows, uint64_t* unique_ids, float* merged,
                       int64_t* num_unique) {
  sort_and_segment_sum(ctx, kMergeNames, Pooling::Sum, n, dim, nullptr, ids, n, rows, dim,
                       unique_ids, merged, num_unique, /*id_bits=*/64, /*padded=*/false);
}

}  // namespace lockstep::kernels::cuda

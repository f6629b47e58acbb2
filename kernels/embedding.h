#pragma once
// Pooled embedding lookup for multi-hot fields in CSR form, forward and backward, and the merge
// of sparse gradient rows gathered from several ranks.

#include "kernels/common.h"

namespace lockstep::kernels {

enum class Pooling : int { Sum = 0, Mean = 1 };

// Forward. Bag b holds positions offsets[b] .. offsets[b+1]-1 of `ids`:
//   out[b, :] = scale_b * sum_{j in bag b} table[ids[j], :],  scale_b = 1 (Sum) or
//   1 / (offsets[b+1] - offsets[b]) (Mean). An empty bag gives a zero row.
//   table:   (rows, dim) row-major
//   offsets: (batch + 1) int64, non-decreasing, absolute positions into `ids`; offsets[0] may
//            be > 0, so the bags of one field can be a window of a larger CSR
//   ids:     row indices (uint64), each < rows
// Invalid offsets (offsets[0] < 0, a decreasing pair) or an id >= rows: the CPU reference
// throws lockstep::Error naming the first bad element and writes nothing; CUDA records the same
// error in ctx's device error record (thrown, with the same message, by the next to_host() or
// ctx.check_device_errors()), skips the bad elements, and never reads or writes out of bounds
// (out rows of bags with bad offsets are not written). See kernels/input_errors.h.
//   out:     (batch, dim) with row stride ld_out >= dim (so a field can write its slice of a
//            concatenated feature matrix directly)
// Positions are summed in increasing order and scale is applied last, identically on CPU and
// CUDA, so the two agree bitwise.
LOCKSTEP_KERNEL_IMPLS(pooled_lookup_forward, const Context& ctx, Pooling pooling, int64_t batch,
                      int64_t dim, const T* table, int64_t rows, const int64_t* offsets,
                      const uint64_t* ids, T* out, int64_t ld_out)
namespace detail {
inline void check_pooled_lookup_forward(int64_t batch, int64_t dim, int64_t rows, int64_t ld_out) {
  constexpr const char* op = "pooled_lookup_forward";
  LOCKSTEP_CHECK(batch >= 0 && dim >= 0 && rows >= 0, "{}: negative size batch={} dim={} rows={}",
                 op, batch, dim, rows);
  LOCKSTEP_CHECK(ld_out >= dim, "{}: ld_out={} is smaller than dim={}", op, ld_out, dim);
}
}  // namespace detail
template <class T>
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const T* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, T* out, int64_t ld_out) {
  detail::check_pooled_lookup_forward(batch, dim, rows, ld_out);
  LOCKSTEP_DISPATCH(T, ctx, pooled_lookup_forward, pooling, batch, dim, table, rows, offsets, ids,
                    out, ld_out);
}

// Backward: the sparse gradient with respect to the table rows touched by the batch.
//   offsets:    (batch + 1), offsets[0] == 0 (a whole CSR, not a window)
//   dout:       (batch, dim) with row stride ld_dout
//   nnz:        offsets[batch] (passed by the caller, who knows it on the host); with `padded`,
//               the positions staged: offsets[batch] <= nnz, and positions offsets[batch] ..
//               nnz - 1 are padding, in no bag (so that a batch's sizes repeat for CUDA graphs)
//   padded:     every padding position holds the same id, greater than every id of a bag and
//               below 2^id_bits (a table's row count, with id_bits_for(rows + 1)); padding adds
//               nothing: the outputs are the bits of the unpadded call. The CPU reference throws
//               on other padding ids; CUDA may then group them wrongly, like ids past id_bits.
//   unique_ids: (>= nnz) out: the distinct ids of the batch in ascending order
//   grad_rows:  (>= nnz, dim) out: row u is the gradient of table row unique_ids[u]
//   num_unique: out: number U of distinct ids; ONE element in ctx's device memory (host memory
//               on the CPU) so that CUDA callers need not synchronise.
// Gradient of row r = sum over the n positions j with ids[j] == r of
// scale_{bag(j)} * dout[bag(j), :] (each product rounded before it is added), in this order:
// n <= kHotChunk: sequentially in increasing j, from 0; a hot id (n > kHotChunk): its positions
// in increasing j cut into chunks of kHotChunk, each summed so; chunk c's sum added to lane
// c mod kHotLanes (lanes from 0, chunks in order); then the lanes combined by the xor butterfly
// (for o = 16, 8, 4, 2, 1: lane l ← lane l + lane l^o; the result is lane 0). So a Zipf-popular
// id is summed by many threads at once on CUDA instead of one warp in turn. Sort + segmented
// reduction, no float atomics: identical bits run-to-run, and on CPU and CUDA.
// Invalid offsets (offsets[0] != 0, a decreasing pair, offsets[batch] != nnz): the CPU throws,
// CUDA records the same error in ctx's device error record and writes only within the bounds
// above. Ids are not checked against a table (the sparse optimizers check them).
//   id_bits:    every id is < 2^id_bits (id_bits_for(rows) for a table of `rows` rows; 64 when
//               unknown): the radix sorts sort only those bits (a 1M-row table needs 20 of 64:
//               about 3x fewer passes on CUDA; 2 passes instead of a comparison sort on the CPU).
//               The CPU reference throws on an id at or above 2^id_bits; CUDA may group such an
//               id wrongly, but it is at or above the table's rows, which the optimizers reject.
/// Positions per chunk of a hot id's sum, and the lanes its chunk sums are spread over.
inline constexpr int64_t kHotChunk = 32;
inline constexpr int kHotLanes = 32;

/// The bits an id below `rows` needs: the smallest b >= 1 with rows <= 2^b.
inline int id_bits_for(int64_t rows) {
  int bits = 1;
  while (bits < 64 && (uint64_t{1} << bits) < static_cast<uint64_t>(rows)) ++bits;
  return bits;
}

LOCKSTEP_KERNEL_IMPLS(pooled_lookup_backward, const Context& ctx, Pooling pooling, int64_t batch,
                      int64_t dim, const int64_t* offsets, const uint64_t* ids, int64_t nnz,
                      const T* dout, int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                      int64_t* num_unique, int id_bits, bool padded)
namespace detail {
inline void check_pooled_lookup_backward(int64_t batch, int64_t dim, int64_t nnz, int64_t ld_dout,
                                         int id_bits) {
  constexpr const char* op = "pooled_lookup_backward";
  LOCKSTEP_CHECK(batch >= 0 && dim >= 0 && nnz >= 0, "{}: negative size batch={} dim={} nnz={}", op,
                 batch, dim, nnz);
  LOCKSTEP_CHECK(id_bits >= 1 && id_bits <= 64, "{}: id_bits={} is outside [1, 64]", op, id_bits);
  LOCKSTEP_CHECK(ld_dout >= dim, "{}: ld_dout={} is smaller than dim={}", op, ld_dout, dim);
  LOCKSTEP_CHECK(batch > 0 || nnz == 0, "{}: nnz={} but the batch has no samples", op, nnz);
}
}  // namespace detail
template <class T>
void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz, const T* dout,
                            int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                            int64_t* num_unique, int id_bits = 64, bool padded = false) {
  detail::check_pooled_lookup_backward(batch, dim, nnz, ld_dout, id_bits);
  LOCKSTEP_DISPATCH(T, ctx, pooled_lookup_backward, pooling, batch, dim, offsets, ids, nnz, dout,
                    ld_dout, unique_ids, grad_rows, num_unique, id_bits, padded);
}

// The backward of a dynamic table's lookup, whose ids are positions among the batch's distinct
// keys and arrive sorted (kernels::unique_keys sorted them once, when the batch was staged): the
// gradient per key without sorting again, and with it `side_width` Sum-pooled values per bag.
//   offsets, nnz, padded, dout, ld_dout: as pooled_lookup_backward (positions offsets[batch] ..
//               nnz - 1 are padding, in no bag and in no key's run)
//   order:      (offsets[batch]) the positions grouped by key: key u's positions are order[
//               starts[u] .. starts[u + 1] - 1], ascending
//   starts:     (num_keys + 1) starts[0] = 0, non-decreasing, starts[num_keys] = offsets[batch]
//   num_keys:   ONE int64 in ctx's device memory (host memory on the CPU), <= nnz
//   side:       (batch, side_width) row-major, or nullptr when side_width == 0
//   rows:       (>= num_keys, ld_rows), ld_rows >= side_width + dim; out: row u = [the sums of
//               side[bag(j), c] (c < side_width), then of scale_bag(j) * dout[bag(j), d] (d < dim)]
//               over key u's positions j, each in pooled_lookup_backward's order (sequential in
//               increasing j, or a hot key's chunks and lanes). Rows past num_keys: untouched.
// So the columns have exactly the bits of pooled_lookup_backward over the same ids (and of a
// one-wide Sum backward per side column). Bad offsets: as pooled_lookup_backward. A grouping
// unique_keys does not make (an order entry outside [0, offsets[batch]), starts that decrease or
// miss the ends, num_keys past offsets[batch]): the CPU throws naming it and writes nothing;
// CUDA records a bad order entry with the CPU's message, clamps the starts and the count to
// [0, nnz], reads nothing out of bounds, and leaves the affected rows undefined.
LOCKSTEP_KERNEL_IMPLS(keyed_lookup_backward, const Context& ctx, Pooling pooling, int64_t batch,
                      int64_t dim, const int64_t* offsets, int64_t nnz, bool padded,
                      const int* order, const int64_t* starts, const int64_t* num_keys,
                      const T* dout, int64_t ld_dout, int64_t side_width, const T* side, T* rows,
                      int64_t ld_rows)
namespace detail {
inline void check_keyed_lookup_backward(int64_t batch, int64_t dim, int64_t nnz, int64_t ld_dout,
                                        int64_t side_width, bool has_side, int64_t ld_rows) {
  constexpr const char* op = "keyed_lookup_backward";
  LOCKSTEP_CHECK(batch >= 0 && dim >= 0 && nnz >= 0 && side_width >= 0,
                 "{}: negative size batch={} dim={} nnz={} side_width={}", op, batch, dim, nnz,
                 side_width);
  LOCKSTEP_CHECK(ld_dout >= dim, "{}: ld_dout={} is smaller than dim={}", op, ld_dout, dim);
  LOCKSTEP_CHECK(batch > 0 || nnz == 0, "{}: nnz={} but the batch has no samples", op, nnz);
  LOCKSTEP_CHECK(side_width == 0 || has_side, "{}: side_width={} but no side matrix", op,
                 side_width);
  LOCKSTEP_CHECK(ld_rows >= side_width + dim,
                 "{}: ld_rows={} is smaller than side_width + dim = {}", op, ld_rows,
                 side_width + dim);
  LOCKSTEP_CHECK(nnz <= INT32_MAX, "{}: nnz={} ids in one batch exceeds the limit of {}", op, nnz,
                 INT32_MAX);
}
}  // namespace detail
template <class T>
void keyed_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const int64_t* offsets, int64_t nnz, bool padded, const int* order,
                           const int64_t* starts, const int64_t* num_keys, const T* dout,
                           int64_t ld_dout, int64_t side_width, const T* side, T* rows,
                           int64_t ld_rows) {
  detail::check_keyed_lookup_backward(batch, dim, nnz, ld_dout, side_width, side != nullptr,
                                      ld_rows);
  LOCKSTEP_DISPATCH(T, ctx, keyed_lookup_backward, pooling, batch, dim, offsets, nnz, padded, order,
                    starts, num_keys, dout, ld_dout, side_width, side, rows, ld_rows);
}

// Merges the sparse gradients gathered from several ranks: rows with equal ids are summed.
//   n:          input rows; ids (n) row indices in any order; rows (n, dim) row-major, stride dim
//   unique_ids: (>= n) out: the distinct ids in ascending order
//   merged:     (>= n, dim) out: merged[u] = sum of rows[i] over i with ids[i] == unique_ids[u],
//               added in increasing i (acc = 0; acc += rows[i] ...)
//   num_unique: out: U, ONE int64 in ctx's device memory (host memory on the CPU)
// Deterministic: no float atomics; identical bits run-to-run and on CPU and CUDA. n = 0 gives
// U = 0. It is pooled_lookup_backward with Sum pooling over n one-id bags (offsets 0, 1, ..., n,
// dout = rows) without the offsets, and gives exactly its bits.
LOCKSTEP_KERNEL_IMPLS(merge_sparse_rows, const Context& ctx, int64_t n, int64_t dim,
                      const uint64_t* ids, const T* rows, uint64_t* unique_ids, T* merged,
                      int64_t* num_unique)
namespace detail {
inline void check_merge_sparse_rows(int64_t n, int64_t dim) {
  LOCKSTEP_CHECK(n >= 0 && dim >= 0, "merge_sparse_rows: negative size n={} dim={}", n, dim);
}
}  // namespace detail
template <class T>
void merge_sparse_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* ids,
                       const T* rows, uint64_t* unique_ids, T* merged, int64_t* num_unique) {
  detail::check_merge_sparse_rows(n, dim);
  LOCKSTEP_DISPATCH(T, ctx, merge_sparse_rows, n, dim, ids, rows, unique_ids, merged, num_unique);
}

}  // namespace lockstep::kernels

// CPU reference for the pooled embedding lookup (kernels/embedding.h).
//
// The CUDA kernels reproduce these loops operation for operation (same summation order, same
// scale arithmetic), so the two agree bitwise; change one only together with the other.

#include "kernels/embedding.h"
#include "kernels/cpu/parallel.h"
#include "kernels/input_errors.h"

#include <algorithm>
#include <numeric>
#include <utility>
#include <vector>

namespace lockstep::kernels::cpu {

namespace {

// Throws unless offsets is a valid CSR row pointer for `batch` bags: offsets[0] == 0 (or >= 0
// when `slice` allows a window of a larger CSR) and non-decreasing. Names the first bad sample so
// that the caller can find it in its batch.
// The messages are those of kernels/input_errors.h, which the CUDA kernels report too.
void check_offsets(const char* op, int64_t batch, const int64_t* offsets, bool slice = false) {
  if (!(slice ? offsets[0] >= 0 : offsets[0] == 0))
    throw Error(offsets_start_message(op, offsets[0], slice));
  for (int64_t b = 0; b < batch; ++b) {
    if (offsets[b + 1] < offsets[b])
      throw Error(offsets_decreasing_message(op, b, offsets[b], offsets[b + 1]));
  }
}

// Positions ahead whose table row a pooled lookup prefetches.
constexpr int64_t kPrefetch = 8;

// The pooling factor of one bag of `len` ids. Written once so that forward and backward use the
// same arithmetic as the CUDA kernels: 1 / len rounded once in T, applied by one multiply.
template <class T>
T bag_scale(Pooling pooling, int64_t len) {
  return pooling == Pooling::Mean && len > 0 ? T(1) / static_cast<T>(len) : T(1);
}

using IdPosition = std::pair<uint64_t, int64_t>;

// keys = (ids[j], j) for j < nnz, ordered by id then position: the one order a stable sort by id
// gives, which fixes the summation order of sum_rows_by_id (the CUDA radix sort is stable too).
// Ids below 2^33 (a table's rows: id_bits): a least-significant-digit radix sort over id_bits,
// each pass stable. Otherwise fixed blocks sorted on the kernel threads, then merged pairwise,
// level by level. `merged` is scratch of nnz entries.
void order_by_id(const Context& ctx, int64_t nnz, const uint64_t* ids, int id_bits,
                 std::vector<IdPosition>& keys, std::vector<IdPosition>& merged) {
  keys.resize(static_cast<size_t>(nnz));
  merged.resize(static_cast<size_t>(nnz));
  if (id_bits <= 33) {
    const int passes = (id_bits + 10) / 11, digit = (id_bits + passes - 1) / passes;
    const uint64_t mask = (uint64_t{1} << digit) - 1;
    LOCKSTEP_KEPT_VECTOR(int64_t, bucket);
    bucket.resize(size_t{1} << digit);
    for (int64_t j = 0; j < nnz; ++j) keys[j] = {ids[j], j};
    for (int shift = 0; shift < passes * digit; shift += digit) {
      std::fill(bucket.begin(), bucket.end(), 0);
      for (int64_t j = 0; j < nnz; ++j) ++bucket[(keys[j].first >> shift) & mask];
      int64_t at = 0;
      for (auto& b : bucket) at += std::exchange(b, at);  // exclusive prefix sums
      for (int64_t j = 0; j < nnz; ++j) merged[bucket[(keys[j].first >> shift) & mask]++] = keys[j];
      keys.swap(merged);
    }
    return;
  }
  constexpr int64_t kSortBlock = 8192;
  parallel_for(ctx, nnz, kSortBlock, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) keys[j] = {ids[j], j};
    std::sort(keys.begin() + b, keys.begin() + e);
  });
  for (int64_t width = kSortBlock; width < nnz; width *= 2) {
    parallel_for(ctx, (nnz + 2 * width - 1) / (2 * width), 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t lo = p * 2 * width, mid = std::min(nnz, lo + width),
                      hi = std::min(nnz, lo + 2 * width);
        std::merge(keys.begin() + lo, keys.begin() + mid, keys.begin() + mid, keys.begin() + hi,
                   merged.begin() + lo);
      }
    });
    keys.swap(merged);
  }
}

// A hot segment (more than kHotChunk positions) summed in the order kernels/embedding.h states:
// chunk c's sequential sum goes to lane c mod kHotLanes, then the lanes' xor butterfly. pos(k):
// the original position of sorted position k; value(j): the term of position j.
template <class T, class Pos, class Value>
[[gnu::noinline]] T hot_segment_sum(const Pos& pos, int64_t begin, int64_t end,
                                    const Value& value) {
  T lanes[kHotLanes] = {};
  for (int64_t from = begin, c = 0; from < end; from += kHotChunk, ++c) {
    T sum = T(0);
    for (int64_t k = from; k < std::min(end, from + kHotChunk); ++k) sum += value(pos(k));
    lanes[c % kHotLanes] += sum;
  }
  for (int offset = kHotLanes / 2; offset > 0; offset /= 2) {
    T next[kHotLanes];
    for (int l = 0; l < kHotLanes; ++l) next[l] = lanes[l] + lanes[l ^ offset];
    std::copy_n(next, kHotLanes, lanes);
  }
  return lanes[0];
}

// out_row[d] (d < width) = the sum over the sorted positions begin .. end - 1 of
// contribution(j, d) (j = pos(k)): sequential from 0 in increasing j, or a hot segment's order.
// The common short segment's columns stay inline in the caller's loop.
template <class T, class Pos, class Contribution>
[[gnu::always_inline]] inline void sum_segment(const Pos& pos, int64_t begin, int64_t end,
                                               int64_t width, const Contribution& contribution,
                                               T* out_row) {
  if (end - begin <= kHotChunk) {  // the common case: every column, in order
    for (int64_t d = 0; d < width; ++d) {
      T sum = T(0);
      for (int64_t k = begin; k < end; ++k) sum += contribution(pos(k), d);
      out_row[d] = sum;
    }
    return;
  }
  for (int64_t d = 0; d < width; ++d)
    out_row[d] = hot_segment_sum<T>(pos, begin, end, [&](int64_t j) { return contribution(j, d); });
}

// The sparse-gradient reduction shared by pooled_lookup_backward and merge_sparse_rows: for each
// distinct id, in ascending id order, unique_ids[u] = id and out[u, d] = the sum over the
// positions j with ids[j] == id of contribution(j, d), in the order kernels/embedding.h states
// (increasing j from 0; hot ids by chunks and lanes). Returns the number of distinct ids.
//   ids: (nnz), each < 2^id_bits; unique_ids: (>= nnz); out: (>= nnz, dim)
template <class T, class Contribution>
int64_t sum_rows_by_id(const Context& ctx, int64_t nnz, int64_t dim, const uint64_t* ids,
                       int id_bits, Contribution contribution, uint64_t* unique_ids, T* out) {
  LOCKSTEP_KEPT_VECTOR(IdPosition, keys);
  LOCKSTEP_KEPT_VECTOR(IdPosition, merged);
  LOCKSTEP_KEPT_VECTOR(int64_t, starts);
  order_by_id(ctx, nnz, ids, id_bits, keys, merged);

  // One segment per distinct id; each summed over its positions in order, per dim.
  starts.clear();
  for (int64_t j = 0; j < nnz; ++j)
    if (j == 0 || keys[j].first != keys[j - 1].first) starts.push_back(j);
  const auto segments = static_cast<int64_t>(starts.size());
  starts.push_back(nnz);
  const int64_t per_segment = segments > 0 ? nnz / segments : 1;
  const IdPosition* sorted = keys.data();
  const auto pos = [sorted](int64_t k) { return sorted[k].second; };
  parallel_for(ctx, segments, grain_for(per_segment * dim), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      unique_ids[u] = sorted[starts[u]].first;
      sum_segment(pos, starts[u], starts[u + 1], dim, contribution, out + u * dim);
    }
  });
  return segments;
}

// Checks a (possibly padded) CSR against the nnz its caller passed: offsets[batch] == nnz, or
// <= nnz with padding.
void check_offsets_end(const char* op, int64_t batch, const int64_t* offsets, int64_t nnz,
                       bool padded) {
  check_offsets(op, batch, offsets);
  if (padded ? offsets[batch] > nnz : offsets[batch] != nnz)
    throw Error(offsets_end_message(op, batch, offsets[batch], nnz));
}

// bag_of[j] = the bag of position j < offsets[batch], and with Mean pooling scaled_dout = each
// bag's dout times its pooling factor, stored before summing: the product is rounded on its own
// (no fused multiply-add into the sum), as on CUDA. Returns contribution(j, d), the term of
// position j in column d of a row's gradient.
template <class T>
auto bag_contributions(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                       const int64_t* offsets, const T* dout, int64_t ld_dout,
                       std::vector<int64_t>& bag_of, std::vector<T>& scaled_dout) {
  bag_of.resize(static_cast<size_t>(offsets[batch]));
  if (pooling == Pooling::Mean) scaled_dout.resize(static_cast<size_t>(batch * dim));
  parallel_for(ctx, batch, grain_for(dim + 1), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t j = offsets[b]; j < offsets[b + 1]; ++j) bag_of[j] = b;
      if (pooling != Pooling::Mean) continue;
      const T scale = bag_scale<T>(pooling, offsets[b + 1] - offsets[b]);
      for (int64_t d = 0; d < dim; ++d) scaled_dout[b * dim + d] = dout[b * ld_dout + d] * scale;
    }
  });
  return [pooling, dim, dout, ld_dout, bag = bag_of.data(), scaled = scaled_dout.data()](
             int64_t j, int64_t d) {
    const int64_t b = bag[j];
    return pooling == Pooling::Mean ? scaled[b * dim + d] : dout[b * ld_dout + d];
  };
}

}  // namespace

// Sizes and strides are validated by the dispatcher (kernels/embedding.h); the CSR itself is
// validated here, where it is readable.
template <class T>
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const T* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, T* out, int64_t ld_out) {
  constexpr const char* op = "pooled_lookup_forward";
  if (batch == 0) return;
  check_offsets(op, batch, offsets, /*slice=*/true);
  // Validate every id before writing anything, so a bad batch leaves `out` untouched.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = offsets[b]; j < offsets[b + 1]; ++j) {
      if (ids[j] >= static_cast<uint64_t>(rows))
        throw Error(id_out_of_range_message(op, j, ids[j], b, rows));
    }
  }

  const int64_t avg_len = std::max<int64_t>(1, (offsets[batch] - offsets[0]) / batch);
  parallel_for(ctx, batch, grain_for(avg_len * dim), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* out_row = out + b * ld_out;
      const int64_t begin = offsets[b], end = offsets[b + 1];
      const T scale = bag_scale<T>(pooling, end - begin);
      // Per element: increasing position order, then the scale last (the CUDA kernel's order).
      for (int64_t d = 0; d < dim; ++d) out_row[d] = T(0);
      for (int64_t j = begin; j < end; ++j) {
        // Rows are scattered over a large table: ask for the row kPrefetch positions ahead (the
        // next bag's first ones too) while this one is added.
        if (j + kPrefetch < offsets[batch])
          __builtin_prefetch(table + static_cast<int64_t>(ids[j + kPrefetch]) * dim);
        const T* row = table + static_cast<int64_t>(ids[j]) * dim;
        for (int64_t d = 0; d < dim; ++d) out_row[d] += row[d];
      }
      for (int64_t d = 0; d < dim; ++d) out_row[d] *= scale;  // an empty bag: 0 * 1 = 0
    }
  });
}

template <class T>
void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz, const T* dout,
                            int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                            int64_t* num_unique, int id_bits, bool padded) {
  constexpr const char* op = "pooled_lookup_backward";
  *num_unique = 0;
  if (batch == 0) return;  // nnz == 0 (checked by the dispatcher)
  check_offsets_end(op, batch, offsets, nnz, padded);
  if (id_bits < 64)
    for (int64_t j = 0; j < nnz; ++j)
      if (ids[j] >> id_bits != 0)
        throw Error(
            fmt::format("{}: ids[{}] = {} is not below 2^id_bits (id_bits = {}): pass "
                        "id_bits_for(rows) of the table it indexes",
                        op, j, ids[j], id_bits));
  // Padding: one id above every id of a bag (what lets CUDA drop it as the last sorted
  // segment), then left out.
  const int64_t padding_from = offsets[batch];
  if (padding_from < nnz) {
    const uint64_t pad = ids[padding_from];
    const uint64_t largest = padding_from > 0 ? *std::max_element(ids, ids + padding_from) : 0;
    for (int64_t j = padding_from; j < nnz; ++j)
      if (ids[j] != pad || (padding_from > 0 && pad <= largest))
        throw Error(fmt::format(
            "{}: padding ids[{}] = {}: every padding position must hold the same id, above every "
            "id of a bag (the largest is {})",
            op, j, ids[j], largest));
  }
  nnz = padding_from;
  if (nnz == 0) return;
  LOCKSTEP_KEPT_VECTOR(int64_t, bag_of);
  LOCKSTEP_KEPT_VECTOR(T, scaled_dout);
  const auto contribution =
      bag_contributions(ctx, pooling, batch, dim, offsets, dout, ld_dout, bag_of, scaled_dout);
  *num_unique = sum_rows_by_id<T>(ctx, nnz, dim, ids, id_bits, contribution, unique_ids, grad_rows);
}

template <class T>
void keyed_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const int64_t* offsets, int64_t nnz, bool padded, const int* order,
                           const int64_t* starts, const int64_t* num_keys, const T* dout,
                           int64_t ld_dout, int64_t side_width, const T* side, T* rows,
                           int64_t ld_rows) {
  constexpr const char* op = "keyed_lookup_backward";
  if (batch == 0) return;  // nnz == 0 (checked by the dispatcher)
  check_offsets_end(op, batch, offsets, nnz, padded);
  // The grouping unique_keys made, checked before anything is written.
  const int64_t total = offsets[batch], keys = *num_keys;
  if (keys < 0 || keys > total) throw Error(count_out_of_range_message(op, keys, total));
  for (int64_t u = 0; u <= keys; ++u)
    if ((u == 0 && starts[0] != 0) || (u > 0 && starts[u] < starts[u - 1]) || starts[u] > total ||
        (u == keys && starts[u] != total))
      throw Error(fmt::format(
          "{}: starts[{}] = {}: the key runs must start at 0, not decrease and end at the {} "
          "positions of the bags",
          op, u, starts[u], total));
  for (int64_t k = 0; k < total; ++k)
    if (order[k] < 0 || order[k] >= total)
      throw Error(row_out_of_range_message(op, RowArray::Order, k, order[k], total));
  if (keys == 0) return;
  LOCKSTEP_KEPT_VECTOR(int64_t, bag_of);
  LOCKSTEP_KEPT_VECTOR(T, scaled_dout);
  const auto contribution =
      bag_contributions(ctx, pooling, batch, dim, offsets, dout, ld_dout, bag_of, scaled_dout);
  const auto side_term = [&](int64_t j, int64_t c) { return side[bag_of[j] * side_width + c]; };
  const auto pos = [order](int64_t k) { return static_cast<int64_t>(order[k]); };
  parallel_for(ctx, keys, grain_for(std::max<int64_t>(1, total / keys) * (dim + side_width)),
               [&](int64_t u0, int64_t u1) {
                 for (int64_t u = u0; u < u1; ++u) {
                   T* row = rows + u * ld_rows;
                   sum_segment(pos, starts[u], starts[u + 1], side_width, side_term, row);
                   sum_segment(pos, starts[u], starts[u + 1], dim, contribution, row + side_width);
                 }
               });
}

// Row i is a bag of one id with Sum pooling: the backward's reduction with contribution(i, d) =
// rows[i, d], hence exactly the bits of pooled_lookup_backward over offsets 0, 1, ..., n.
template <class T>
void merge_sparse_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* ids,
                       const T* rows, uint64_t* unique_ids, T* merged, int64_t* num_unique) {
  const auto contribution = [rows, dim](int64_t i, int64_t d) { return rows[i * dim + d]; };
  *num_unique =
      sum_rows_by_id<T>(ctx, n, dim, ids, /*id_bits=*/64, contribution, unique_ids, merged);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                   \
  template void pooled_lookup_forward<T>(const Context&, Pooling, int64_t, int64_t, const T*,     \
                                         int64_t, const int64_t*, const uint64_t*, T*, int64_t);  \
  template void pooled_lookup_backward<T>(const Context&, Pooling, int64_t, int64_t,              \
                                          const int64_t*, const uint64_t*, int64_t, const T*,     \
                                          int64_t, uint64_t*, T*, int64_t*, int, bool);           \
  template void keyed_lookup_backward<T>(                                                         \
      const Context&, Pooling, int64_t, int64_t, const int64_t*, int64_t, bool, const int*,       \
      const int64_t*, const int64_t*, const T*, int64_t, int64_t, const T*, T*, int64_t);         \
  template void merge_sparse_rows<T>(const Context&, int64_t, int64_t, const uint64_t*, const T*, \
                                     uint64_t*, T*, int64_t*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

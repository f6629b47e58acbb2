// CPU reference for the pooled embedding lookup (kernels/embedding.h).
//
// The CUDA kernels reproduce these loops operation for operation (same summation order, same
// scale arithmetic), so the two agree bitwise; change one only together with the other.

#include "kernels/embedding.h"
#include "kernels/input_errors.h"

#include <algorithm>
#include <numeric>
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

// The pooling factor of one bag of `len` ids. Written once so that forward and backward use the
// same arithmetic as the CUDA kernels: 1 / len rounded once in T, applied by one multiply.
template <class T>
T bag_scale(Pooling pooling, int64_t len) {
  return pooling == Pooling::Mean && len > 0 ? T(1) / static_cast<T>(len) : T(1);
}

// The sparse-gradient reduction shared by pooled_lookup_backward and merge_sparse_rows: for each
// distinct id, in ascending id order, unique_ids[u] = id and out[u, d] = the sum over the
// positions j with ids[j] == id, in increasing j, of contribution(j, d), starting from 0.
// Returns the number of distinct ids.
//   ids: (nnz); unique_ids: (>= nnz); out: (>= nnz, dim)
template <class T, class Contribution>
int64_t sum_rows_by_id(int64_t nnz, int64_t dim, const uint64_t* ids, Contribution contribution,
                       uint64_t* unique_ids, T* out) {
  // Stable sort of positions by id: equal ids keep increasing position order, which fixes the
  // summation order below (the CUDA radix sort is stable too).
  std::vector<int64_t> order(static_cast<size_t>(nnz));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });

  // One segment per distinct id; sum its positions sequentially, per dim.
  int64_t u = 0;
  for (int64_t start = 0; start < nnz; ++u) {
    const uint64_t id = ids[order[start]];
    int64_t end = start + 1;
    while (end < nnz && ids[order[end]] == id) ++end;
    unique_ids[u] = id;
    T* out_row = out + u * dim;
    for (int64_t d = 0; d < dim; ++d) {
      T sum = T(0);
      for (int64_t k = start; k < end; ++k) sum += contribution(order[k], d);
      out_row[d] = sum;
    }
    start = end;
  }
  return u;
}

}  // namespace

// Sizes and strides are validated by the dispatcher (kernels/embedding.h); the CSR itself is
// validated here, where it is readable.
template <class T>
void pooled_lookup_forward(const Context&, Pooling pooling, int64_t batch, int64_t dim,
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

  for (int64_t b = 0; b < batch; ++b) {
    T* out_row = out + b * ld_out;
    const int64_t begin = offsets[b], end = offsets[b + 1];
    const T scale = bag_scale<T>(pooling, end - begin);
    for (int64_t d = 0; d < dim; ++d) {
      // Increasing position order, then the scale last: the order the CUDA kernel uses.
      T sum = T(0);
      for (int64_t j = begin; j < end; ++j) sum += table[static_cast<int64_t>(ids[j]) * dim + d];
      out_row[d] = sum * scale;  // an empty bag gives 0 * 1 = 0
    }
  }
}

template <class T>
void pooled_lookup_backward(const Context&, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz, const T* dout,
                            int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                            int64_t* num_unique) {
  constexpr const char* op = "pooled_lookup_backward";
  *num_unique = 0;
  if (batch == 0) return;  // nnz == 0 (checked by the dispatcher)
  check_offsets(op, batch, offsets);
  if (offsets[batch] != nnz) throw Error(offsets_end_message(op, batch, offsets[batch], nnz));
  if (nnz == 0) return;

  // Each position's bag and its pooling factor applied to dout, stored before summing: the
  // product is rounded on its own (no fused multiply-add into the sum), as on CUDA.
  std::vector<int64_t> bag_of(static_cast<size_t>(nnz));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = offsets[b]; j < offsets[b + 1]; ++j) bag_of[j] = b;
  std::vector<T> scaled_dout;
  if (pooling == Pooling::Mean) {
    scaled_dout.resize(static_cast<size_t>(batch * dim));
    for (int64_t b = 0; b < batch; ++b) {
      const T scale = bag_scale<T>(pooling, offsets[b + 1] - offsets[b]);
      for (int64_t d = 0; d < dim; ++d) scaled_dout[b * dim + d] = dout[b * ld_dout + d] * scale;
    }
  }
  const auto contribution = [&](int64_t j, int64_t d) {
    const int64_t b = bag_of[j];
    return pooling == Pooling::Mean ? scaled_dout[b * dim + d] : dout[b * ld_dout + d];
  };
  *num_unique = sum_rows_by_id<T>(nnz, dim, ids, contribution, unique_ids, grad_rows);
}

// Row i is a bag of one id with Sum pooling: the backward's reduction with contribution(i, d) =
// rows[i, d], hence exactly the bits of pooled_lookup_backward over offsets 0, 1, ..., n.
template <class T>
void merge_sparse_rows(const Context&, int64_t n, int64_t dim, const uint64_t* ids, const T* rows,
                       uint64_t* unique_ids, T* merged, int64_t* num_unique) {
  const auto contribution = [rows, dim](int64_t i, int64_t d) { return rows[i * dim + d]; };
  *num_unique = sum_rows_by_id<T>(n, dim, ids, contribution, unique_ids, merged);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                   \
  template void pooled_lookup_forward<T>(const Context&, Pooling, int64_t, int64_t, const T*,     \
                                         int64_t, const int64_t*, const uint64_t*, T*, int64_t);  \
  template void pooled_lookup_backward<T>(const Context&, Pooling, int64_t, int64_t,              \
                                          const int64_t*, const uint64_t*, int64_t, const T*,     \
                                          int64_t, uint64_t*, T*, int64_t*);                      \
  template void merge_sparse_rows<T>(const Context&, int64_t, int64_t, const uint64_t*, const T*, \
                                     uint64_t*, T*, int64_t*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

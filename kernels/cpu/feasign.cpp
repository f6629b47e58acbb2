// CPU reference of a dynamic table's row work (kernels/feasign.h). The CUDA kernels run the same
// loops, one thread per row (or per sample for wide_lookup_forward), in the same order.
#include "kernels/feasign.h"
#include "kernels/input_errors.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "lockstep/core/error.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::kernels::cpu {

template <class T>
void gather_rows(const Context&, int64_t n, int64_t dim, const T* src, int64_t ld_src,
                 int64_t src_rows, const int64_t* index, T* dst, int64_t ld_dst) {
  for (int64_t i = 0; i < n; ++i)  // a negative index is a row of zeros
    if (index[i] >= src_rows)
      throw Error(row_out_of_range_message("gather_rows", RowArray::Index, i, index[i], src_rows));
  for (int64_t i = 0; i < n; ++i) {
    T* out = dst + i * ld_dst;
    if (index[i] < 0)
      std::fill(out, out + dim, T(0));
    else
      std::copy(src + index[i] * ld_src, src + index[i] * ld_src + dim, out);
  }
}

template <class T>
void fill_rows(const Context&, int64_t n, int64_t dim, const int64_t* index, T value, T* dst,
               int64_t ld, int64_t dst_rows) {
  for (int64_t i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= dst_rows)
      throw Error(row_out_of_range_message("fill_rows", RowArray::Index, i, index[i], dst_rows));
  for (int64_t i = 0; i < n; ++i) std::fill(dst + index[i] * ld, dst + index[i] * ld + dim, value);
}

template <class T>
void feasign_init_rows(const Context&, int64_t n, int64_t dim, const uint64_t* keys,
                       const int64_t* slots, uint64_t seed, uint64_t stream, float scale, T* embedx,
                       int64_t rows) {
  for (int64_t i = 0; i < n; ++i)
    if (slots[i] < 0 || slots[i] >= rows)
      throw Error(
          row_out_of_range_message("feasign_init_rows", RowArray::Slots, i, slots[i], rows));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d)
      embedx[slots[i] * dim + d] =
          static_cast<T>(embedding::feasign_init_value(seed, stream, keys[i], d, scale));
}

template <class T>
void wide_lookup_forward(const Context&, int64_t batch, int64_t per_sample, const int64_t* offsets,
                         const uint64_t* ids, const T* lr, int64_t lr_rows, T* out) {
  for (int64_t i = 0; i < batch * per_sample; ++i)
    for (int64_t j = offsets[i]; j < offsets[i + 1]; ++j)
      if (ids[j] >= static_cast<uint64_t>(lr_rows))
        throw Error(
            id_out_of_range_message("wide_lookup_forward", j, ids[j], i / per_sample, lr_rows));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = b * per_sample; i < (b + 1) * per_sample; ++i)
      for (int64_t j = offsets[i]; j < offsets[i + 1]; ++j) out[b] += lr[ids[j]];
}

template <class T>
void unique_keys(const Context&, int64_t nnz, int64_t room, uint64_t* ids, uint64_t* keys,
                 int64_t* count, int* order, int64_t* starts) {
  // (key, position) pairs sorted: each run is one key, its positions ascending (the CUDA
  // kernels' stable sort gives the same order). Kept between calls: no allocation per step.
  thread_local std::vector<std::pair<uint64_t, int64_t>> sorted;
  sorted.resize(static_cast<size_t>(nnz));
  for (int64_t j = 0; j < nnz; ++j) sorted[static_cast<size_t>(j)] = {ids[j], j};
  std::sort(sorted.begin(), sorted.end());
  std::fill(keys, keys + room, uint64_t{0});
  std::fill(starts, starts + room + 1, int64_t{0});
  int64_t n = 0;
  for (int64_t i = 0; i < nnz; ++i) {
    const auto [key, j] = sorted[static_cast<size_t>(i)];
    if (i == 0 || key != sorted[static_cast<size_t>(i - 1)].first) {
      starts[n] = i;
      keys[n++] = key;
    }
    ids[j] = static_cast<uint64_t>(n - 1);
    order[i] = static_cast<int>(j);
  }
  starts[n] = nnz;
  *count = n;
}

template <class T>
void feasign_bag_stats(const Context&, int64_t n, int64_t repeat, const T* labels, const T* dwide,
                       T* dst) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < repeat; ++p) {
      T* row = dst + (i * repeat + p) * 3;
      row[0] = T(1);
      row[1] = labels != nullptr ? labels[i] : T(0);
      row[2] = dwide != nullptr ? dwide[i] : T(0);
    }
}

#define LOCKSTEP_INSTANTIATE(T)                                                                  \
  template void gather_rows<T>(const Context&, int64_t, int64_t, const T*, int64_t, int64_t,     \
                               const int64_t*, T*, int64_t);                                     \
  template void unique_keys<T>(const Context&, int64_t, int64_t, uint64_t*, uint64_t*, int64_t*, \
                               int*, int64_t*);                                                  \
  template void fill_rows<T>(const Context&, int64_t, int64_t, const int64_t*, T, T*, int64_t,   \
                             int64_t);                                                           \
  template void feasign_init_rows<T>(const Context&, int64_t, int64_t, const uint64_t*,          \
                                     const int64_t*, uint64_t, uint64_t, float, T*, int64_t);    \
  template void wide_lookup_forward<T>(const Context&, int64_t, int64_t, const int64_t*,         \
                                       const uint64_t*, const T*, int64_t, T*);                  \
  template void feasign_bag_stats<T>(const Context&, int64_t, int64_t, const T*, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

#pragma once
// The row work of a dynamic table (issue 13, docs/feasign_store.md "On the GPU"): the feasign
// store decides on the host (which key has which slot, who is admitted, evicted, deleted) and
// moves rows on ctx's device through these kernels, so the CPU and a CUDA context run the same
// sequence of operations and agree bitwise. Each is a plain loop over rows, with no summation
// across threads except wide_lookup_forward, which sums one sample's positions in order.

#include "kernels/common.h"

namespace lockstep::kernels {

// dst[i, :] = src[index[i], :] for i < n (row strides ld_src, ld_dst), or zeros when index[i] < 0.
//   src: (src_rows, dim).
// An index, slot or id out of range: the CPU throws naming it (kernels/input_errors.h); CUDA
// skips it (gather_rows writes zeros) and reports the same message from the device error record.
LOCKSTEP_KERNEL_IMPLS(gather_rows, const Context& ctx, int64_t n, int64_t dim, const T* src,
                      int64_t ld_src, int64_t src_rows, const int64_t* index, T* dst,
                      int64_t ld_dst)
// dst[index[i], :dim] = value for i < n (row stride ld). Distinct indices in [0, dst_rows).
LOCKSTEP_KERNEL_IMPLS(fill_rows, const Context& ctx, int64_t n, int64_t dim, const int64_t* index,
                      T value, T* dst, int64_t ld, int64_t dst_rows)
// A newly admitted feasign's embedx: embedx[slots[i], d] = feasign_init_value(seed, stream,
// keys[i], d, scale) (lockstep/embedding/feasign_init.h) for i < n, d < dim; embedx (rows, dim).
LOCKSTEP_KERNEL_IMPLS(feasign_init_rows, const Context& ctx, int64_t n, int64_t dim,
                      const uint64_t* keys, const int64_t* slots, uint64_t seed, uint64_t stream,
                      float scale, T* embedx, int64_t rows)
// The wide term of one field: out[b] += lr[ids[j]] for every position j of the bags b * per + p
// (p < per_sample), bag after bag, position after position (b < batch). offsets: (batch *
// per_sample + 1) absolute positions (a window of a larger CSR); ids < lr_rows.
LOCKSTEP_KERNEL_IMPLS(wide_lookup_forward, const Context& ctx, int64_t batch, int64_t per_sample,
                      const int64_t* offsets, const uint64_t* ids, const T* lr, int64_t lr_rows,
                      T* out)
// A batch's distinct keys of one dynamic table, sorted once for the whole step: the nnz raw keys
// in ids become positions in keys (the distinct keys, ascending; zeros past them), *count = the
// number n of distinct keys, and order/starts group the positions by key for the backward
// (keyed_lookup_backward): key u's positions are order[starts[u] .. starts[u + 1] - 1],
// ascending; starts[n] = nnz. keys: (room), order: (room) (entries past nnz untouched), starts:
// (room + 1) (zeros past n + 1); room >= nnz (a padded batch's staged id count). nnz must fit
// in an int.
LOCKSTEP_KERNEL_IMPLS(unique_keys, const Context& ctx, int64_t nnz, int64_t room, uint64_t* ids,
                      uint64_t* keys, int64_t* count, int* order, int64_t* starts)
// The per-bag side values of a dynamic table's backward (keyed_lookup_backward's side, width 3):
// row i * repeat + p of dst (n * repeat, 3) = [1, labels[i], dwide[i]] for i < n, p < repeat, a
// zero for a nullptr labels or dwide. Summed per key they are its record's show (occurrences),
// click (their labels) and lr gradient (DynamicTable's record, lockstep/embedding/dynamic_table.h).
LOCKSTEP_KERNEL_IMPLS(feasign_bag_stats, const Context& ctx, int64_t n, int64_t repeat,
                      const T* labels, const T* dwide, T* dst)

namespace detail {
inline void check_rows_op(const char* op, int64_t n, int64_t dim, int64_t ld, const char* ld_name) {
  check_size(op, "n", n);
  check_size(op, "dim", dim);
  check_ld(op, ld_name, ld, "dim", dim);
}
}  // namespace detail

template <class T>
void gather_rows(const Context& ctx, int64_t n, int64_t dim, const T* src, int64_t ld_src,
                 int64_t src_rows, const int64_t* index, T* dst, int64_t ld_dst) {
  detail::check_rows_op("gather_rows", n, dim, ld_src, "ld_src");
  detail::check_ld("gather_rows", "ld_dst", ld_dst, "dim", dim);
  detail::check_size("gather_rows", "src_rows", src_rows);
  if (n == 0 || dim == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, gather_rows, n, dim, src, ld_src, src_rows, index, dst, ld_dst);
}
template <class T>
void fill_rows(const Context& ctx, int64_t n, int64_t dim, const int64_t* index, T value, T* dst,
               int64_t ld, int64_t dst_rows) {
  detail::check_rows_op("fill_rows", n, dim, ld, "ld");
  if (n == 0 || dim == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, fill_rows, n, dim, index, value, dst, ld, dst_rows);
}
template <class T>
void feasign_init_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* keys,
                       const int64_t* slots, uint64_t seed, uint64_t stream, float scale, T* embedx,
                       int64_t rows) {
  detail::check_rows_op("feasign_init_rows", n, dim, dim, "dim");
  if (n == 0 || dim == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, feasign_init_rows, n, dim, keys, slots, seed, stream, scale, embedx,
                    rows);
}
template <class T>
void wide_lookup_forward(const Context& ctx, int64_t batch, int64_t per_sample,
                         const int64_t* offsets, const uint64_t* ids, const T* lr, int64_t lr_rows,
                         T* out) {
  detail::check_size("wide_lookup_forward", "batch", batch);
  detail::check_size("wide_lookup_forward", "per_sample", per_sample);
  if (batch == 0 || per_sample == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, wide_lookup_forward, batch, per_sample, offsets, ids, lr, lr_rows, out);
}
template <class T>
void unique_keys(const Context& ctx, int64_t nnz, int64_t room, uint64_t* ids, uint64_t* keys,
                 int64_t* count, int* order, int64_t* starts) {
  detail::check_size("unique_keys", "nnz", nnz);
  LOCKSTEP_CHECK(room >= nnz, "unique_keys: room={} is smaller than nnz={}", room, nnz);
  LOCKSTEP_CHECK(nnz <= INT32_MAX, "unique_keys: nnz={} ids in one batch exceeds the limit of {}",
                 nnz, INT32_MAX);
  LOCKSTEP_DISPATCH(T, ctx, unique_keys, nnz, room, ids, keys, count, order, starts);
}
template <class T>
void feasign_bag_stats(const Context& ctx, int64_t n, int64_t repeat, const T* labels,
                       const T* dwide, T* dst) {
  detail::check_size("feasign_bag_stats", "n", n);
  detail::check_size("feasign_bag_stats", "repeat", repeat);
  if (n == 0 || repeat == 0) return;
  LOCKSTEP_DISPATCH(T, ctx, feasign_bag_stats, n, repeat, labels, dwide, dst);
}

}  // namespace lockstep::kernels

#pragma once
// Pooled embedding lookup for multi-hot fields in CSR form, forward and backward.

#include "kernels/common.h"

namespace lockstep::kernels {

enum class Pooling : int { Sum = 0, Mean = 1 };

// Forward. Bag b holds positions offsets[b] .. offsets[b+1]-1 of `ids`:
//   out[b, :] = scale_b * sum_{j in bag b} table[ids[j], :],  scale_b = 1 (Sum) or
//   1 / (offsets[b+1] - offsets[b]) (Mean). An empty bag gives a zero row.
//   table:   (rows, dim) row-major
//   offsets: (batch + 1) int64, non-decreasing, absolute positions into `ids`; offsets[0] may
//            be > 0, so the bags of one field can be a window of a larger CSR
//   ids:     row indices (uint64), each < rows (the CPU reference throws
//            lockstep::Error naming the position otherwise; CUDA skips such ids)
//   out:     (batch, dim) with row stride ld_out >= dim (so a field can write its slice of a
//            concatenated feature matrix directly)
// Positions are summed in increasing order and scale is applied last, identically on CPU and
// CUDA, so the two agree bitwise.
namespace cpu {
template <class T>
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const T* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, T* out, int64_t ld_out);
}
namespace cuda {
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const float* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, float* out, int64_t ld_out);
}
template <class T>
void pooled_lookup_forward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                           const T* table, int64_t rows, const int64_t* offsets,
                           const uint64_t* ids, T* out, int64_t ld_out) {
  LOCKSTEP_DISPATCH(T, ctx, pooled_lookup_forward, pooling, batch, dim, table, rows, offsets, ids,
                    out, ld_out);
}

// Backward: the sparse gradient with respect to the table rows touched by the batch.
//   dout:       (batch, dim) with row stride ld_dout
//   nnz:        offsets[batch] (passed by the caller, who knows it on the host)
//   unique_ids: (>= nnz) out: the distinct ids of the batch in ascending order
//   grad_rows:  (>= nnz, dim) out: row u is the gradient of table row unique_ids[u]
//   num_unique: out: number U of distinct ids; ONE element in ctx's device memory (host memory
//               on the CPU) so that CUDA callers need not synchronise.
// Gradient of row r = sum over positions j with ids[j] == r, in increasing j, of
// scale_{bag(j)} * dout[bag(j), :]. Sort + segmented reduction, no float atomics: identical
// bits run-to-run, and on CPU and CUDA.
namespace cpu {
template <class T>
void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz, const T* dout,
                            int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                            int64_t* num_unique);
}
namespace cuda {
void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz,
                            const float* dout, int64_t ld_dout, uint64_t* unique_ids,
                            float* grad_rows, int64_t* num_unique);
}
template <class T>
void pooled_lookup_backward(const Context& ctx, Pooling pooling, int64_t batch, int64_t dim,
                            const int64_t* offsets, const uint64_t* ids, int64_t nnz, const T* dout,
                            int64_t ld_dout, uint64_t* unique_ids, T* grad_rows,
                            int64_t* num_unique) {
  LOCKSTEP_DISPATCH(T, ctx, pooled_lookup_backward, pooling, batch, dim, offsets, ids, nnz, dout,
                    ld_dout, unique_ids, grad_rows, num_unique);
}

}  // namespace lockstep::kernels

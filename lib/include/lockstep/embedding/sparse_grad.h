#pragma once
// The sparse gradient of one embedding table for the current step.

#include <cstdint>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"

namespace lockstep::embedding {

/// Rows of a table touched by the current step and their summed gradients, on the table's
/// device: ids() holds count() distinct row indices in ascending order, rows() their gradients
/// (count() × dim(), row-major). The count lives in device memory (one int64) so that CUDA
/// producers need not synchronise; capacity() bounds it on the host.
///
/// Lifecycle per step: a producer (the lookup backward, or the cross-rank merge) calls
/// reserve(capacity) and writes ids/rows/count through the pointers, then mark_ready();
/// the table's apply_gradients() consumes it and clear()s it. A gradient that is not ready
/// is empty: no row changes.
template <class T>
class SparseGrad {
 public:
  /// Buffers for up to `capacity` rows of width `dim` (grows, keeps capacity). Clears readiness.
  void reserve(const Context& ctx, int64_t capacity, int64_t dim) {
    capacity_ = capacity < 1 ? 1 : capacity;
    dim_ = dim;
    ids_.resize(ctx, {capacity_});
    rows_.resize(ctx, {capacity_, dim});
    if (count_.numel() != 1) count_.resize(ctx, {1});
    ready_ = false;
  }
  void mark_ready() { ready_ = true; }
  void clear() { ready_ = false; }
  /// True when the current step produced this gradient (set by a producer, cleared by apply).
  bool ready() const { return ready_; }

  int64_t capacity() const { return capacity_; }
  int64_t dim() const { return dim_; }
  uint64_t* ids() { return ids_.data(); }
  const uint64_t* ids() const { return ids_.data(); }
  T* rows() { return rows_.data(); }
  const T* rows() const { return rows_.data(); }
  /// One int64 on the device: the number of valid rows (≤ capacity()).
  int64_t* count() { return count_.data(); }
  const int64_t* count() const { return count_.data(); }

 private:
  Tensor<uint64_t> ids_;
  Tensor<T> rows_;
  Tensor<int64_t> count_;
  int64_t capacity_ = 0, dim_ = 0;
  bool ready_ = false;
};

}  // namespace lockstep::embedding

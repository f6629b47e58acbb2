#pragma once
// Internal: copies a batch's dense features into their columns of a model's input matrix.

#include "kernels/copy.h"
#include "lockstep/data/batch.h"

namespace lockstep::models {

/// dst[:, 0:num_dense] (rows = batch.size, row stride ld) = batch.dense, through `staging` on
/// ctx's device. No-op when num_dense == 0.
template <class T>
void place_dense_features(const Context& ctx, const data::Batch& batch, int64_t num_dense,
                          Tensor<T>& staging, T* dst, int64_t ld) {
  if (num_dense == 0 || batch.size == 0) return;
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.dense.size()) == batch.size * num_dense,
                 "batch has {} dense values for {} rows; the model expects {} per row",
                 batch.dense.size(), batch.size, num_dense);
  upload(ctx, std::vector<T>(batch.dense.begin(), batch.dense.end()), staging,
         {batch.size, num_dense});
  kernels::copy_2d<T>(ctx, batch.size, num_dense, staging.data(), num_dense, dst, ld);
}

}  // namespace lockstep::models

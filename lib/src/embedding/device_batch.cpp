#include "lockstep/embedding/device_batch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/copy.h"

namespace lockstep::embedding {

namespace {
/// Segments start on 64-byte boundaries (like Tensor allocations).
size_t aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }
}  // namespace

int64_t padded_count(int64_t n) {
  if (n <= 64) return 64;
  int shift = 0;
  while ((n >> shift) >= 32) ++shift;  // n >> shift in [16, 32)
  const int64_t step = int64_t{1} << shift;
  return (n + step - 1) / step * step;
}

template <class T>
void DeviceBatch<T>::begin(const Context& ctx, const data::Batch& batch,
                           const std::vector<TableSize>& tables, bool has_lengths) {
  size_ = batch.size;
  dense_values_ = static_cast<int64_t>(batch.dense.size());
  num_dense_ = batch.num_dense();
  num_labels_ = static_cast<int64_t>(batch.labels.size());
  has_lengths_ = has_lengths;
  host_lengths_.clear();
  if (has_lengths) host_lengths_.assign(static_cast<size_t>(size_), 0);
  size_t at = 0;
  const auto take = [&](size_t bytes) {
    const size_t start = at;
    at += aligned(bytes);
    return start;
  };
  tables_.resize(tables.size());
  for (size_t t = 0; t < tables.size(); ++t) {
    Table& tb = tables_[t];
    tb.bags = tables[t].bags;
    tb.nnz = tables[t].nnz;
    tb.padded = pad_ids_ && tables[t].may_pad;
    tb.staged = tb.padded ? padded_count(tb.nnz) : tb.nnz;
    tb.offsets_at = take(static_cast<size_t>(tb.bags + 1) * sizeof(int64_t));
    tb.ids_at = take(static_cast<size_t>(tb.staged) * sizeof(uint64_t));
    tb.keyed = tables[t].keyed;
  }
  lengths_at_ = take(has_lengths ? static_cast<size_t>(size_) * sizeof(int64_t) : 0);
  token_lengths_at_ = take(has_lengths ? static_cast<size_t>(size_) * sizeof(int64_t) : 0);
  dense_at_ = take(static_cast<size_t>(dense_values_) * sizeof(T));
  labels_at_ = take(static_cast<size_t>(num_labels_) * sizeof(T));
  copied_ = at;
  // A keyed table's distinct keys (at most nnz), their number and the grouping of its ids are
  // made on the device, in room after everything copied. Every part is sized by the ids staged,
  // so batches of one padded shape have one layout (CUDA graphs).
  for (Table& tb : tables_) {
    const auto staged = static_cast<size_t>(tb.keyed ? tb.staged : 0);
    tb.keys_at = take(tb.keyed ? (1 + staged) * sizeof(uint64_t) : 0);
    tb.order_at = take(staged * sizeof(int));
    tb.starts_at = take(tb.keyed ? (1 + staged) * sizeof(int64_t) : 0);
  }
  bytes_ = at;
  host_.reserve(ctx, bytes_);  // waits until the previous batch's copy has read the buffer
}

template <class T>
void DeviceBatch<T>::finish(const Context& ctx, const data::Batch& batch) {
  if (has_lengths_) {
    int64_t* len = host_ptr<int64_t>(lengths_at_);
    int64_t* tok = host_ptr<int64_t>(token_lengths_at_);
    for (int64_t b = 0; b < size_; ++b) {
      len[b] = host_lengths_[b];
      tok[b] = host_lengths_[b] + 1;
    }
  }
  // Checked as copied (a batch from a driver's own source has not met the file readers' checks):
  // a label outside [0, 1] or a value that is not finite would train a NaN or a negative loss.
  T* dense = host_ptr<T>(dense_at_);
  for (int64_t i = 0; i < dense_values_; ++i) {
    LOCKSTEP_CHECK(std::isfinite(batch.dense[i]), "batch sample {}: dense value {} is {}",
                   i / std::max<int64_t>(num_dense_, 1), i % std::max<int64_t>(num_dense_, 1),
                   batch.dense[i]);
    dense[i] = static_cast<T>(batch.dense[i]);
  }
  T* labels = host_ptr<T>(labels_at_);
  for (int64_t i = 0; i < num_labels_; ++i) {
    LOCKSTEP_CHECK(batch.labels[i] >= 0.0f && batch.labels[i] <= 1.0f,
                   "batch sample {}: label {} is outside [0, 1]", i, batch.labels[i]);
    labels[i] = static_cast<T>(batch.labels[i]);
  }
  if (ctx.is_cpu()) {
    base_ = host_.data();
    return;
  }
  if (device_.bytes() < bytes_ || device_.device() != ctx.device() || device_.data() == nullptr)
    device_ = Buffer(ctx, std::max(bytes_, device_.bytes() + device_.bytes() / 2));
  host_.copy_to_device(ctx, device_.data(), copied_);  // THE copy of the step
  base_ = device_.data();
}

template <class T>
void DeviceBatch<T>::stage(const Context& ctx, const data::Batch& batch) {
  begin(ctx, batch, {}, false);
  finish(ctx, batch);
}

template <class T>
void DeviceBatch<T>::copy_dense(const Context& ctx, int64_t num_dense, T* dst, int64_t ld) const {
  if (num_dense == 0 || size_ == 0) return;
  LOCKSTEP_CHECK(dense_values_ == size_ * num_dense,
                 "batch has {} dense values for {} rows; the model expects {} per row",
                 dense_values_, size_, num_dense);
  kernels::copy_2d<T>(ctx, size_, num_dense, dense(), num_dense, dst, ld);
}

template class DeviceBatch<float>;
template class DeviceBatch<double>;

}  // namespace lockstep::embedding

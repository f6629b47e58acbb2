#pragma once
// DeviceBatch: a host data::Batch staged on a context's device ONCE per step — every table's
// row ids and bag offsets, the history lengths, the dense features and the labels — through one
// reusable pinned host buffer and one host -> device copy. Models, embedding layers, losses and
// the BST encoder read the step's batch from here; nothing else uploads batch data.

#include <cstdint>
#include <utility>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/pinned_buffer.h"
#include "lockstep/core/tensor.h"
#include "lockstep/data/batch.h"

namespace lockstep::embedding {

/// The device copy of one batch. Filled by a stager — EmbeddingBagCollection::stage() (tables,
/// lengths, dense, labels) or stage() below (dense and labels only) — and valid until the next
/// stage into the same object. Every pointer is on the context's device (on a CPU context it is
/// the host staging memory itself: no copy at all).
///
/// Layout (per table t, the bags of every field reading it, field after field, as one CSR):
///   offsets(t): (bags(t) + 1) int64, absolute positions into ids(t)
///   ids(t):     (nnz(t)) uint64 row indices of table t (keys already hashed to rows)
///   lengths():  (size) int64, valid history positions per sample (nullptr without sequences)
///   token_lengths(): (size) int64, lengths() + 1 — the history plus the target token
///   dense():    (size, num_dense) row-major T
///   labels():   (size) T, or nullptr when the batch has no labels
/// The id count a padded table stages for n ids: n rounded up to 16–32 steps per power of two
/// (at most 1/16 more; at least 64), so that id counts of similar batches fall into few sizes.
int64_t padded_count(int64_t n);

template <class T>
class DeviceBatch {
 public:
  DeviceBatch() = default;
  DeviceBatch(DeviceBatch&&) noexcept = default;
  DeviceBatch& operator=(DeviceBatch&&) noexcept = default;

  /// Stages a batch that no embedding layer reads: dense features and labels only.
  void stage(const Context& ctx, const data::Batch& batch);

  int64_t size() const { return size_; }
  int64_t num_dense() const { return num_dense_; }
  /// Number of dense values of the host batch (size · num_dense for a well-formed batch).
  int64_t dense_values() const { return dense_values_; }
  int64_t num_labels() const { return num_labels_; }
  const T* dense() const { return num_dense_ > 0 ? ptr<T>(dense_at_) : nullptr; }
  const T* labels() const { return num_labels_ == size_ && size_ > 0 ? ptr<T>(labels_at_) : nullptr; }
  const int64_t* lengths() const { return has_lengths_ ? ptr<int64_t>(lengths_at_) : nullptr; }
  const int64_t* token_lengths() const {
    return has_lengths_ ? ptr<int64_t>(token_lengths_at_) : nullptr;
  }
  /// The history lengths on the host (empty without sequence fields).
  const std::vector<int64_t>& host_lengths() const { return host_lengths_; }

  size_t num_tables() const { return tables_.size(); }
  int64_t bags(size_t t) const { return tables_.at(t).bags; }
  /// The ids of table t's bags (offsets(t)[bags(t)]).
  int64_t nnz(size_t t) const { return tables_.at(t).nnz; }
  /// The ids staged for table t: nnz(t), or with padding (padded(t)) nnz(t) rounded up to
  /// padded_count(), the positions past nnz(t) holding the table's row count (an id above every
  /// row: pooled_lookup_backward's `padded` contract; for a dynamic table, whose ids are
  /// positions among the batch's distinct keys, staged_nnz(t)). So batches of one size repeat
  /// their shapes — what lets a CUDA graph replay the step — and the results keep their bits.
  int64_t staged_nnz(size_t t) const { return tables_.at(t).staged; }
  bool padded(size_t t) const { return tables_.at(t).padded; }
  /// Pad the id counts of the tables that allow it (set before staging; kept by later stages).
  void set_pad_ids(bool on) { pad_ids_ = on; }
  bool pad_ids() const { return pad_ids_; }
  const int64_t* offsets(size_t t) const { return ptr<int64_t>(tables_.at(t).offsets_at); }
  const uint64_t* ids(size_t t) const { return ptr<uint64_t>(tables_.at(t).ids_at); }
  /// A dynamic table t (staged with TableSize::keyed), on ctx's device: the number n of the
  /// batch's distinct keys of the table (one int64; n <= nnz(t)), the keys in ascending order
  /// (staged_nnz(t) entries, zeros past n) — ids(t) are positions in this list, and a padded
  /// table's padding ids are staged_nnz(t) — and the ids' positions grouped by key for the
  /// backward: key u's positions are staged_key_order(t)[starts[u] .. starts[u + 1] - 1],
  /// ascending (order: staged_nnz(t) ints, starts: staged_nnz(t) + 1). Made on the device from
  /// the staged raw keys (kernels::unique_keys), which sorts them once per step.
  const int64_t* staged_key_count(size_t t) const { return ptr<int64_t>(keyed_at(t)); }
  const uint64_t* staged_keys(size_t t) const {
    return ptr<uint64_t>(keyed_at(t) + sizeof(int64_t));
  }
  const int* staged_key_order(size_t t) const { return ptr<int>(tables_.at(t).order_at); }
  const int64_t* staged_key_starts(size_t t) const { return ptr<int64_t>(tables_.at(t).starts_at); }

  /// dst[:, 0:num_dense] (size() rows, row stride ld) = the dense features, on ctx's device.
  /// Throws Error when the batch does not hold exactly num_dense values per sample. No-op when
  /// num_dense == 0.
  void copy_dense(const Context& ctx, int64_t num_dense, T* dst, int64_t ld) const;

  // ---- For stagers. begin() lays out the batch (host: sizes only), the host_* pointers are then
  // filled, and finish() writes dense features and labels and issues THE host -> device copy.
  struct TableSize {
    int64_t bags = 0, nnz = 0;
    bool may_pad = false;  // padded to padded_count(nnz) when pad_ids() is set
    bool keyed = false;    // a dynamic table: its distinct keys are made with the batch
  };
  /// Lays out `batch` with the given per-table sizes and reserves the pinned buffer.
  void begin(const Context& ctx, const data::Batch& batch, const std::vector<TableSize>& tables,
             bool has_lengths);
  int64_t* host_offsets(size_t t) { return host_ptr<int64_t>(tables_.at(t).offsets_at); }
  uint64_t* host_ids(size_t t) { return host_ptr<uint64_t>(tables_.at(t).ids_at); }
  /// Table t's ids where the kernels read them (after finish()), for in-place device work such
  /// as hashing raw keys into rows.
  uint64_t* staged_ids(size_t t) {
    return const_cast<uint64_t*>(ptr<uint64_t>(tables_.at(t).ids_at));
  }
  /// After finish(): where unique_keys writes a keyed table's distinct keys, their number and
  /// the grouping of its ids.
  int64_t* staged_key_count(size_t t) {
    return const_cast<int64_t*>(std::as_const(*this).staged_key_count(t));
  }
  uint64_t* staged_keys(size_t t) {
    return const_cast<uint64_t*>(std::as_const(*this).staged_keys(t));
  }
  int* staged_key_order(size_t t) {
    return const_cast<int*>(std::as_const(*this).staged_key_order(t));
  }
  int64_t* staged_key_starts(size_t t) {
    return const_cast<int64_t*>(std::as_const(*this).staged_key_starts(t));
  }
  /// The history lengths, to fill (size() elements) before finish().
  std::vector<int64_t>& mutable_host_lengths() { return host_lengths_; }
  void finish(const Context& ctx, const data::Batch& batch);

 private:
  struct Table {
    int64_t bags = 0, nnz = 0, staged = 0;
    bool padded = false, keyed = false;
    size_t offsets_at = 0, ids_at = 0, keys_at = 0, order_at = 0, starts_at = 0;
  };
  size_t keyed_at(size_t t) const {
    LOCKSTEP_CHECK(tables_.at(t).keyed, "DeviceBatch: table {} was not staged with its keys", t);
    return tables_[t].keys_at;
  }
  template <class U>
  const U* ptr(size_t at) const {
    return reinterpret_cast<const U*>(static_cast<const char*>(base_) + at);
  }
  template <class U>
  U* host_ptr(size_t at) {
    return reinterpret_cast<U*>(static_cast<char*>(host_.data()) + at);
  }

  int64_t size_ = 0, num_dense_ = 0, dense_values_ = 0, num_labels_ = 0;
  bool has_lengths_ = false;
  bool pad_ids_ = false;
  std::vector<Table> tables_;
  size_t lengths_at_ = 0, token_lengths_at_ = 0, dense_at_ = 0, labels_at_ = 0, bytes_ = 0;
  size_t copied_ = 0;  // bytes_ less the room of keyed tables' distinct keys (made on the device)
  std::vector<int64_t> host_lengths_;
  PinnedBuffer host_;
  Buffer device_;
  const void* base_ = nullptr;  // device_ on CUDA, host_ on the CPU
};

extern template class DeviceBatch<float>;
extern template class DeviceBatch<double>;

}  // namespace lockstep::embedding

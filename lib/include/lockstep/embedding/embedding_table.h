#pragma once
// Embedding tables keyed by 64-bit feature signs, with a row-wise sparse optimizer.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"
#include "lockstep/embedding/dynamic_table.h"
#include "lockstep/embedding/feasign_accessor.h"
#include "lockstep/embedding/sparse_grad.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::embedding {

enum class Pooling { Sum, Mean };
/// "sum" or "mean"; parse throws Error naming `field` otherwise.
const char* pooling_name(Pooling p);
Pooling parse_pooling(std::string_view name, std::string_view field);

/// "hashed": keys hashed into a fixed number of rows (collisions possible); "dynamic": the
/// feasign store (DynamicTable: one slot per distinct key, admission, decay, eviction).
enum class TableKind { Hashed, Dynamic };
const char* table_kind_name(TableKind k);

struct TableConfig {
  std::string name;
  int64_t rows = 0;  // hash buckets; for a dynamic table its capacity (most feasigns held)
  int64_t dim = 16;
  Pooling pooling = Pooling::Mean;  // for every multi-hot field that reads this table
  float init_scale = 0.05f;         // rows start uniform in [-init_scale, init_scale]
  /// ids = "identity": a key is its own row (keys must be below rows: small integer ids, no
  /// collisions); otherwise ("hash", the default) keys are hashed to rows.
  bool identity = false;
  /// Not empty: this table is a residual of the table of that name (the dual DNN's student
  /// residual): keys map to the same rows as there, and EmbeddingBagCollection::field_index()
  /// does not return its fields. Set by models, never read from a configuration file.
  std::string residual_of{};
  TableKind kind = TableKind::Hashed;
  /// Dynamic tables only: the per-feasign rules, and the shrink boundaries (every N updates,
  /// 0 = never; at the end of every epoch).
  AccessorConfig accessor{};
  int64_t shrink_every_steps = 0;
  bool shrink_each_epoch = true;
  bool dynamic() const { return kind == TableKind::Dynamic; }
  /// Throws Error naming `prefix`.<field> and its allowed range.
  void validate(std::string_view prefix) const;
};

/// A (rows, dim) table of kind "hashed", or the feasign store of a "dynamic" one (then rows() is
/// its capacity, weights() the embedx vectors, and dynamic_table() everything else). It maps a key to a row with the hashing trick:
/// row = XXH64(key as 8 little-endian bytes, seed = XXH64(table name, or residual_of)) % rows, or, with
/// TableConfig::identity, row = key (a key >= rows throws Error naming the table).
/// Sparse updates: row-wise Adagrad (one accumulator per row) or lazy Adam; only rows touched by
/// a step change. Initial rows come from the counter-based RNG keyed by (seed, table name, row),
/// identical on CPU and CUDA.
template <class T>
class EmbeddingTable {
 public:
  EmbeddingTable(TableConfig config, nn::OptimizerConfig optimizer);

  void allocate(const Context& ctx, uint64_t seed);

  /// Hashed tables only (a dynamic table throws: its slots are not a function of the key).
  uint64_t row_of(uint64_t key) const;
  /// Whether row_of hashes (XXH64 with hash_seed(), kernels/key_hash.h): not a dynamic table,
  /// not ids = "identity". Such a table's keys are staged raw and hashed on the device.
  bool hashes_keys() const { return !dynamic() && !config_.identity; }
  uint64_t hash_seed() const { return hash_seed_; }
  const TableConfig& config() const { return config_; }
  bool dynamic() const { return config_.dynamic(); }
  /// The feasign store of a dynamic table (nullptr for a hashed one, or before allocate()).
  DynamicTable<T>* dynamic_table() { return dynamic_.get(); }
  const DynamicTable<T>* dynamic_table() const { return dynamic_.get(); }
  /// Width of a row of grad(): dim(), or dim() + kDynamicRecordExtra for a dynamic table, whose
  /// gradient is keyed by feasign (ids() are keys) and carries its show/click counts.
  int64_t grad_width() const { return dynamic() ? config_.dim + kDynamicRecordExtra : config_.dim; }
  /// The end of an epoch: a dynamic table with shrink_each_epoch shrinks.
  void end_epoch(const Context& ctx);
  const nn::OptimizerConfig& optimizer_config() const { return optimizer_; }
  int64_t rows() const { return config_.rows; }
  int64_t dim() const { return config_.dim; }
  T* weights() { return dynamic_ ? dynamic_->embedx() : weights_.data(); }
  const T* weights() const { return dynamic_ ? dynamic_->embedx() : weights_.data(); }

  /// The sparse gradient of the current step (written by the lookup backward or the cross-rank
  /// merge, consumed by apply_gradients).
  SparseGrad<T>& grad() { return grad_; }
  const SparseGrad<T>& grad() const { return grad_; }

  /// Applies the optimizer to the rows in the current sparse gradient, scaled by grad_scale.
  /// `step` (from 1) drives Adam's bias correction.
  void apply_gradients(const Context& ctx, T grad_scale, int64_t step);

  /// Host copies of the weights and optimizer state by name ("<table>.weight",
  /// "<table>.accum" or "<table>.m"/"<table>.v"), for checkpoints and tests.
  std::map<std::string, std::vector<T>> to_host(const Context& ctx) const;
  /// Restores what to_host() produced (shapes checked, Error names the tensor).
  void from_host(const Context& ctx, const std::map<std::string, std::vector<T>>& tensors);

 private:
  void allocate_rows(const Context& ctx, uint64_t seed);  // a hashed table's rows and state

  TableConfig config_;
  nn::OptimizerConfig optimizer_;
  uint64_t hash_seed_;
  Tensor<T> weights_, state0_, state1_;
  SparseGrad<T> grad_;
  std::unique_ptr<DynamicTable<T>> dynamic_;
};

extern template class EmbeddingTable<float>;
extern template class EmbeddingTable<double>;

}  // namespace lockstep::embedding

#pragma once
// EmbeddingBagCollection: the embedding layer of a model. Several tables (EmbeddingTable, v1
// rows = XXH64(key) % rows), several multi-hot fields ("embedding bags"), each field pooled (sum
// or mean) into its slice of a concatenated feature matrix.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/embedding/embedding_table.h"

namespace lockstep::embedding {

/// A batch column read through a table. Several fields may share one table (e.g. the target
/// item and the history items); they then share its pooling mode.
struct FieldConfig {
  std::string column;  // name of a sparse/sequence column of the data schema
  std::string table;   // name of a TableConfig
};

/// Owns the tables. Per step: set_batch() (host: keys -> rows, upload), forward(), backward()
/// (per-table sparse gradient, deterministic), apply_gradients().
template <class T>
class EmbeddingBagCollection {
 public:
  /// `batch_columns`: the names of Batch::sparse columns in order (from the data schema).
  /// Throws Error naming the field for an unknown column or table, a duplicate table name, or a
  /// table no field reads.
  EmbeddingBagCollection(std::vector<TableConfig> tables, std::vector<FieldConfig> fields,
                         const std::vector<std::string>& batch_columns,
                         nn::OptimizerConfig optimizer);
  ~EmbeddingBagCollection();
  EmbeddingBagCollection(EmbeddingBagCollection&&) noexcept;

  void allocate(const Context& ctx, uint64_t seed);

  /// Width of the concatenated output: sum of the fields' table dims, in field order.
  int64_t output_width() const { return output_width_; }
  /// Column of `out` where field i starts.
  int64_t field_offset(size_t i) const { return field_offsets_.at(i); }
  const std::vector<FieldConfig>& fields() const { return fields_; }

  /// Maps the batch's keys to rows and uploads them (host -> ctx's device).
  void set_batch(const Context& ctx, const data::Batch& batch);
  int64_t rows() const { return rows_; }

  /// out: (rows, ld_out); field i writes columns [field_offset(i), field_offset(i) + dim).
  void forward(const Context& ctx, T* out, int64_t ld_out) const;
  /// dout: (rows, ld_dout), same column layout. Computes each table's sparse gradient (all fields
  /// of a table are reduced together, so a row read by two fields gets one summed gradient).
  void backward(const Context& ctx, const T* dout, int64_t ld_dout);
  /// Sparse optimizer step on every table that has a gradient.
  void apply_gradients(const Context& ctx, T grad_scale, int64_t step);

  std::vector<EmbeddingTable<T>>& tables() { return tables_; }
  const std::vector<EmbeddingTable<T>>& tables() const { return tables_; }

 private:
  struct TableBatch;
  std::vector<EmbeddingTable<T>> tables_;
  std::vector<FieldConfig> fields_;
  std::vector<int> field_table_;   // table index of each field
  std::vector<int> field_column_;  // Batch::sparse index of each field
  std::vector<int64_t> field_offsets_;
  int64_t output_width_ = 0;
  int64_t rows_ = 0;
  std::vector<std::unique_ptr<TableBatch>> batches_;  // one per table
};

extern template class EmbeddingBagCollection<float>;
extern template class EmbeddingBagCollection<double>;

}  // namespace lockstep::embedding

#pragma once
// EmbeddingBagCollection: the embedding layer of a model. Several tables (EmbeddingTable, v1
// rows = XXH64(key) % rows), several fields. A pooled field ("embedding bag") pools its ids (sum
// or mean) into its slice of a (B, W_pooled) feature matrix; a sequence field gathers its ids
// unpooled, one embedding per position, into its slice of a (B, T, W_seq) sequence matrix.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/embedding/device_batch.h"
#include "lockstep/embedding/embedding_table.h"

namespace lockstep::embedding {

/// A batch column read through a table. Several fields may share one table (e.g. the target
/// item and the history items); pooled fields of one table share its pooling mode.
struct FieldConfig {
  std::string column;  // name of a sparse/sequence column of the data schema
  std::string table;   // name of a TableConfig
  /// 0: pooled. > 0: a sequence field gathered unpooled into max_len positions, NEWEST FIRST
  /// (position 0 = the most recent id, i.e. the last one of the column; ids are stored oldest
  /// first). A longer history keeps its max_len most recent ids; shorter ones are padded with
  /// zero rows. All sequence fields of a collection share max_len and must have the same length
  /// for every sample (e.g. history items and their categories).
  int64_t max_len = 0;
};

/// Checks that `tables` and `fields` fit together, without the data: at least one field; table
/// names unique; every field reads a defined table; max_len in [0, 100000]; a column feeds at
/// most one pooled and one sequence field; all sequence fields share one max_len; every table is
/// read by some field. Throws ConfigError naming the key as a model configuration writes it
/// ("model.fields[3].table", "model.tables[1].name").
void check_layout(const std::vector<TableConfig>& tables, const std::vector<FieldConfig>& fields);

/// Owns the tables. Per step: stage() (host: keys -> rows, one upload into a DeviceBatch),
/// forward(), backward() (per-table sparse gradient, deterministic), apply_gradients().
template <class T>
class EmbeddingBagCollection {
 public:
  /// `batch_columns`: the names of Batch::sparse columns in order (from the data schema).
  /// Throws ConfigError naming the key for what check_layout() rejects and for a field whose
  /// column is not in batch_columns ("model.fields[3].column").
  EmbeddingBagCollection(std::vector<TableConfig> tables, std::vector<FieldConfig> fields,
                         const std::vector<std::string>& batch_columns,
                         nn::OptimizerConfig optimizer);
  ~EmbeddingBagCollection();
  EmbeddingBagCollection(EmbeddingBagCollection&&) noexcept;

  void allocate(const Context& ctx, uint64_t seed);

  /// Width of the pooled output: sum of the pooled fields' table dims, in field order.
  int64_t output_width() const { return output_width_; }
  /// The Batch::sparse columns the model reads, in their order (the constructor's
  /// batch_columns): a staged batch must have exactly these.
  const std::vector<std::string>& batch_columns() const { return batch_columns_; }
  /// Width of one position of the sequence output (sum of the sequence fields' dims) and the
  /// number of positions T (0 when there are no sequence fields).
  int64_t sequence_width() const { return sequence_width_; }
  int64_t sequence_length() const { return sequence_length_; }
  /// Column where field i starts: in the pooled output for pooled fields, in each position of
  /// the sequence output for sequence fields.
  int64_t field_offset(size_t i) const { return field_offsets_.at(i); }
  /// Index of the (first) field reading `column` (fields of residual tables,
  /// TableConfig::residual_of, aside); throws Error naming the column when there is none.
  size_t field_index(const std::string& column) const;
  /// Index of the pooled (sequence = false) or sequence field reading `column`: a column may
  /// feed one of each (e.g. the history mean-pooled for one tower and attended by another).
  /// Throws Error when several fields of that kind read `column` (pooled fields of several
  /// tables, e.g. a first-order table beside the embedding), or none does.
  size_t field_index(const std::string& column, bool sequence) const;
  const std::vector<FieldConfig>& fields() const { return fields_; }

  /// Stages `batch` into `out` for this layer: every field's keys mapped to rows of its table
  /// (one CSR per table, sequences newest first), the history lengths (min(ids, max_len) per
  /// sample), dense features and labels, in one host -> device copy. Throws Error naming the
  /// column for a missing or malformed column, or sequence fields of unequal lengths.
  void stage(const Context& ctx, const data::Batch& batch, DeviceBatch<T>& out) const;
  /// Samples of the batch of the last forward().
  int64_t rows() const { return rows_; }

  /// `batch`: staged by stage(); it must stay alive until backward() (the layer keeps a
  /// pointer to it, like its activations).
  /// out: (rows, ld_out); pooled field i writes columns [field_offset(i), field_offset(i) + dim).
  /// seq_out: (rows, T, ld_seq) (position row stride ld_seq); sequence field i writes columns
  /// [field_offset(i), + dim) of every position; padding positions get zeros. seq_out may be
  /// nullptr only when there are no sequence fields.
  void forward(const Context& ctx, const DeviceBatch<T>& batch, T* out, int64_t ld_out,
               T* seq_out = nullptr, int64_t ld_seq = 0);
  /// The wide term (dynamic tables, issue 13): per sample of the last forward(), the sum of the
  /// lr weights of every id it looked up in a dynamic table; models add it to their logit.
  /// nullptr when the layer has no dynamic table.
  bool has_wide() const { return has_wide_; }
  const T* wide() const { return has_wide_ ? wide_.data() : nullptr; }

  /// dout / dseq: gradients in the same layouts; dwide: the gradient of the wide term (rows;
  /// the logit's, as models add it to the logit), read when has_wide(). Computes each table's
  /// sparse gradient (all fields of a table are reduced together, so a row read by two fields
  /// gets one summed gradient); a dynamic table's is keyed by feasign (EmbeddingTable::grad()).
  void backward(const Context& ctx, const T* dout, int64_t ld_dout, const T* dseq = nullptr,
                int64_t ld_seq = 0, const T* dwide = nullptr);
  /// Sparse optimizer step on every table that has a gradient.
  void apply_gradients(const Context& ctx, T grad_scale, int64_t step);

  std::vector<EmbeddingTable<T>>& tables() { return tables_; }
  const std::vector<EmbeddingTable<T>>& tables() const { return tables_; }
  /// Pointers to the tables (what Model::tables() returns).
  std::vector<EmbeddingTable<T>*> table_pointers() {
    std::vector<EmbeddingTable<T>*> out;
    for (auto& t : tables_) out.push_back(&t);
    return out;
  }

 private:
  struct TableBatch;
  void keyed_gradient(const Context& ctx, size_t t, const T* grad, int64_t ld, const T* dwide);

  std::vector<EmbeddingTable<T>> tables_;
  std::vector<FieldConfig> fields_;
  std::vector<int> field_table_;   // table index of each field
  std::vector<int> field_column_;  // Batch::sparse index of each field
  std::vector<std::string> batch_columns_;  // the Batch::sparse columns, in order
  std::vector<int64_t> field_offsets_;
  int64_t output_width_ = 0, sequence_width_ = 0, sequence_length_ = 0;
  int64_t rows_ = 0;
  bool has_wide_ = false;
  Tensor<T> wide_;
  const DeviceBatch<T>* batch_ = nullptr;              // of the last forward()
  std::vector<std::unique_ptr<TableBatch>> batches_;  // one per table
};

extern template class EmbeddingBagCollection<float>;
extern template class EmbeddingBagCollection<double>;

}  // namespace lockstep::embedding

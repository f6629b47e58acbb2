#include "lockstep/embedding/embedding_bag_collection.h"

#include <algorithm>

#include "kernels/copy.h"
#include "kernels/embedding.h"

namespace lockstep::embedding {

namespace {
kernels::Pooling to_kernel(Pooling p) {
  return p == Pooling::Sum ? kernels::Pooling::Sum : kernels::Pooling::Mean;
}
}  // namespace

/// One table's view of the batch: the bags of all its fields, field after field, as one CSR.
template <class T>
struct EmbeddingBagCollection<T>::TableBatch {
  std::vector<int> fields;            // field indices reading this table, in order
  std::vector<int64_t> host_offsets;  // (fields * rows + 1)
  std::vector<uint64_t> host_ids;     // rows of the table
  Tensor<int64_t> offsets;
  Tensor<uint64_t> ids;
  Tensor<T> dout;  // (fields * rows, dim): gathered gradient
};

template <class T>
EmbeddingBagCollection<T>::EmbeddingBagCollection(std::vector<TableConfig> tables,
                                                  std::vector<FieldConfig> fields,
                                                  const std::vector<std::string>& batch_columns,
                                                  nn::OptimizerConfig optimizer)
    : fields_(std::move(fields)) {
  LOCKSTEP_CHECK(!fields_.empty(), "model.fields is empty: give at least one embedding field");
  for (size_t i = 0; i < tables.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      LOCKSTEP_CHECK(tables[j].name != tables[i].name, "duplicate table name '{}'", tables[i].name);
    tables_.emplace_back(tables[i], optimizer);
    batches_.push_back(std::make_unique<TableBatch>());
  }
  for (size_t f = 0; f < fields_.size(); ++f) {
    const auto& fc = fields_[f];
    auto col = std::find(batch_columns.begin(), batch_columns.end(), fc.column);
    LOCKSTEP_CHECK(col != batch_columns.end(),
                   "field {} reads column '{}', which is not a sparse or sequence column of the "
                   "data (columns: {})",
                   f, fc.column, fmt::join(batch_columns, ", "));
    int table = -1;
    for (size_t t = 0; t < tables_.size(); ++t)
      if (tables_[t].config().name == fc.table) table = static_cast<int>(t);
    LOCKSTEP_CHECK(table >= 0, "field '{}' reads table '{}', which is not defined", fc.column,
                   fc.table);
    field_table_.push_back(table);
    field_column_.push_back(static_cast<int>(col - batch_columns.begin()));
    field_offsets_.push_back(output_width_);
    output_width_ += tables_[table].dim();
    batches_[table]->fields.push_back(static_cast<int>(f));
  }
  for (size_t t = 0; t < tables_.size(); ++t)
    LOCKSTEP_CHECK(!batches_[t]->fields.empty(), "table '{}' is not read by any field",
                   tables_[t].config().name);
}

template <class T>
EmbeddingBagCollection<T>::~EmbeddingBagCollection() = default;
template <class T>
EmbeddingBagCollection<T>::EmbeddingBagCollection(EmbeddingBagCollection&&) noexcept = default;

template <class T>
void EmbeddingBagCollection<T>::allocate(const Context& ctx, uint64_t seed) {
  for (auto& t : tables_) t.allocate(ctx, seed);
}

template <class T>
void EmbeddingBagCollection<T>::set_batch(const Context& ctx, const data::Batch& batch) {
  rows_ = batch.size;
  for (size_t t = 0; t < tables_.size(); ++t) {
    TableBatch& tb = *batches_[t];
    const EmbeddingTable<T>& table = tables_[t];
    tb.host_offsets.assign(1, 0);
    tb.host_ids.clear();
    for (int f : tb.fields) {
      const int c = field_column_[f];
      LOCKSTEP_CHECK(c < static_cast<int>(batch.sparse.size()),
                     "batch has {} sparse columns; field '{}' needs column {}", batch.sparse.size(),
                     fields_[f].column, c);
      const data::SparseColumn& col = batch.sparse[c];
      LOCKSTEP_CHECK(static_cast<int64_t>(col.offsets.size()) == rows_ + 1 &&
                         col.offsets.front() == 0 &&
                         col.offsets.back() == static_cast<int64_t>(col.keys.size()),
                     "column '{}' of the batch is malformed: {} offsets and {} keys for {} rows",
                     fields_[f].column, col.offsets.size(), col.keys.size(), rows_);
      const int64_t base = static_cast<int64_t>(tb.host_ids.size());
      for (int64_t b = 1; b <= rows_; ++b) tb.host_offsets.push_back(base + col.offsets[b]);
      for (uint64_t key : col.keys) tb.host_ids.push_back(table.row_of(key));
    }
    upload(ctx, tb.host_offsets, tb.offsets);
    upload(ctx, tb.host_ids, tb.ids);
  }
}

template <class T>
void EmbeddingBagCollection<T>::forward(const Context& ctx, T* out, int64_t ld_out) const {
  for (size_t t = 0; t < tables_.size(); ++t) {
    const TableBatch& tb = *batches_[t];
    const EmbeddingTable<T>& table = tables_[t];
    for (size_t k = 0; k < tb.fields.size(); ++k) {
      const int f = tb.fields[k];
      // Field k's bags are bags [k*rows, (k+1)*rows) of the table batch; offsets are absolute.
      kernels::pooled_lookup_forward<T>(
          ctx, to_kernel(table.config().pooling), rows_, table.dim(), table.weights(), table.rows(),
          tb.offsets.data() + k * rows_, tb.ids.data(), out + field_offsets_[f], ld_out);
    }
  }
}

template <class T>
void EmbeddingBagCollection<T>::backward(const Context& ctx, const T* dout, int64_t ld_dout) {
  for (size_t t = 0; t < tables_.size(); ++t) {
    TableBatch& tb = *batches_[t];
    EmbeddingTable<T>& table = tables_[t];
    const int64_t dim = table.dim(), nnz = static_cast<int64_t>(tb.host_ids.size());
    const int64_t bags = static_cast<int64_t>(tb.fields.size()) * rows_;
    const T* grad = dout + field_offsets_[tb.fields[0]];
    int64_t ld = ld_dout;
    if (tb.fields.size() > 1) {  // gather the fields' gradient slices into one (bags, dim) matrix
      tb.dout.resize(ctx, {bags, dim});
      for (size_t k = 0; k < tb.fields.size(); ++k)
        kernels::copy_2d<T>(ctx, rows_, dim, dout + field_offsets_[tb.fields[k]], ld_dout,
                            tb.dout.data() + k * rows_ * dim, dim);
      grad = tb.dout.data();
      ld = dim;
    }
    table.grad_capacity = std::max<int64_t>(nnz, 1);
    table.grad_ids.resize(ctx, {table.grad_capacity});
    table.grad_rows.resize(ctx, {table.grad_capacity, dim});
    kernels::pooled_lookup_backward<T>(
        ctx, to_kernel(table.config().pooling), bags, dim, tb.offsets.data(), tb.ids.data(), nnz,
        grad, ld, table.grad_ids.data(), table.grad_rows.data(), table.num_unique.data());
    table.has_grad = true;
  }
}

template <class T>
void EmbeddingBagCollection<T>::apply_gradients(const Context& ctx, T grad_scale, int64_t step) {
  for (auto& t : tables_) t.apply_gradients(ctx, grad_scale, step);
}

template class EmbeddingBagCollection<float>;
template class EmbeddingBagCollection<double>;

}  // namespace lockstep::embedding

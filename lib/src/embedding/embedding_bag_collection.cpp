#include "lockstep/embedding/embedding_bag_collection.h"

#include <algorithm>

#include "kernels/copy.h"
#include "kernels/embedding.h"
#include "kernels/feasign.h"
#include "kernels/init.h"
#include "kernels/key_hash.h"

namespace lockstep::embedding {

namespace {
kernels::Pooling to_kernel(Pooling p) {
  return p == Pooling::Sum ? kernels::Pooling::Sum : kernels::Pooling::Mean;
}
}  // namespace

/// Which fields read one table. The table's part of a staged batch (DeviceBatch) is the bags of
/// those fields, field after field, as one CSR: a pooled field contributes one bag per sample; a
/// sequence field one bag per (sample, position), holding one id or none (padding), so that the
/// pooled lookup kernels gather and differentiate sequences too (a bag of one id has scale 1
/// under either pooling).
template <class T>
struct EmbeddingBagCollection<T>::TableBatch {
  std::vector<int> fields;         // field indices reading this table, in order
  std::vector<int64_t> bag_start;  // first bag of each of those fields, per sample of the batch
  int64_t bags_per_sample = 0;
  Tensor<T> dout;  // (bags, dim): gathered gradient when several fields share the table
  // Dynamic tables: the batch's keys' embedx rows and lr weights (forward); each bag's show,
  // click and dwide (backward: kernels::feasign_bag_stats).
  Tensor<T> compact, compact_lr, bag_stats;
};

void check_layout(const std::vector<TableConfig>& tables, const std::vector<FieldConfig>& fields) {
  LOCKSTEP_CHECK_KEY(!fields.empty(), "model.fields",
                     "model.fields is empty: give at least one embedding field ([[model.fields]] "
                     "with a column and a table)");
  for (size_t i = 0; i < tables.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      LOCKSTEP_CHECK_KEY(tables[j].name != tables[i].name, fmt::format("model.tables[{}].name", i),
                         "model.tables[{}].name = '{}' is also the name of model.tables[{}]: "
                         "table names must be unique",
                         i, tables[i].name, j);
  std::vector<bool> read(tables.size(), false);
  int64_t sequence_length = 0;
  size_t first_sequence = 0;
  for (size_t f = 0; f < fields.size(); ++f) {
    const FieldConfig& fc = fields[f];
    const std::string key = fmt::format("model.fields[{}]", f);
    const auto table = std::find_if(tables.begin(), tables.end(),
                                    [&](const TableConfig& t) { return t.name == fc.table; });
    LOCKSTEP_CHECK_KEY(table != tables.end(), key + ".table",
                       "{}.table = '{}' is not a table: define it in [[model.tables]] or use one "
                       "of the tables defined there",
                       key, fc.table);
    read[static_cast<size_t>(table - tables.begin())] = true;
    check_range(key + ".max_len", fc.max_len, int64_t{0}, int64_t{100000});
    const bool sequence = fc.max_len > 0;
    for (size_t g = 0; g < f; ++g)
      LOCKSTEP_CHECK_KEY(fields[g].column != fc.column || (fields[g].max_len > 0) != sequence ||
                             (!sequence && fields[g].table != fc.table),
                         key + ".column",
                         "{}.column = '{}' is read by model.fields[{}] too, and both are {} fields "
                         "{}(a column may feed one pooled and one sequence field, and further "
                         "pooled fields of other tables)",
                         key, fc.column, g, sequence ? "sequence" : "pooled",
                         sequence ? "" : "of one table ");
    if (!sequence) continue;
    LOCKSTEP_CHECK_KEY(sequence_length == 0 || sequence_length == fc.max_len, key + ".max_len",
                       "{}.max_len = {} but model.fields[{}].max_len = {}: all sequence fields "
                       "of a model share one length",
                       key, fc.max_len, first_sequence, sequence_length);
    if (sequence_length == 0) first_sequence = f;
    sequence_length = fc.max_len;
  }
  for (size_t t = 0; t < tables.size(); ++t)
    LOCKSTEP_CHECK_KEY(read[t], fmt::format("model.tables[{}]", t),
                       "model.tables[{}] ('{}') is not read by any field: remove it or add a "
                       "[[model.fields]] with table = \"{}\"",
                       t, tables[t].name, tables[t].name);
}

template <class T>
EmbeddingBagCollection<T>::EmbeddingBagCollection(std::vector<TableConfig> tables,
                                                  std::vector<FieldConfig> fields,
                                                  const std::vector<std::string>& batch_columns,
                                                  nn::OptimizerConfig optimizer)
    : fields_(std::move(fields)) {
  check_layout(tables, fields_);
  for (size_t i = 0; i < tables.size(); ++i) {
    tables_.emplace_back(tables[i], optimizer);
    batches_.push_back(std::make_unique<TableBatch>());
  }
  for (size_t f = 0; f < fields_.size(); ++f) {
    const auto& fc = fields_[f];
    auto col = std::find(batch_columns.begin(), batch_columns.end(), fc.column);
    LOCKSTEP_CHECK_KEY(col != batch_columns.end(), fmt::format("model.fields[{}].column", f),
                       "model.fields[{}].column = '{}' is not a sparse or sequence column of the "
                       "data (its columns: {})",
                       f, fc.column, fmt::join(batch_columns, ", "));
    int table = 0;
    while (tables_[table].config().name != fc.table) ++table;  // defined: check_layout
    if (fc.max_len > 0) {
      sequence_length_ = fc.max_len;
      field_offsets_.push_back(sequence_width_);
      sequence_width_ += tables_[table].dim();
    } else {
      field_offsets_.push_back(output_width_);
      output_width_ += tables_[table].dim();
    }
    field_table_.push_back(table);
    field_column_.push_back(static_cast<int>(col - batch_columns.begin()));
    batches_[table]->fields.push_back(static_cast<int>(f));
  }
  batch_columns_ = batch_columns;
  for (const auto& t : tables_) has_wide_ = has_wide_ || t.dynamic();
  for (auto& tb : batches_)
    for (int f : tb->fields) {
      tb->bag_start.push_back(tb->bags_per_sample);
      tb->bags_per_sample += fields_[f].max_len > 0 ? sequence_length_ : 1;
    }
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
size_t EmbeddingBagCollection<T>::field_index(const std::string& column) const {
  for (size_t f = 0; f < fields_.size(); ++f)
    if (fields_[f].column == column && tables_[field_table_[f]].config().residual_of.empty())
      return f;
  throw Error(fmt::format("no embedding field reads column '{}'", column));
}

template <class T>
size_t EmbeddingBagCollection<T>::field_index(const std::string& column, bool sequence) const {
  size_t found = fields_.size();
  for (size_t f = 0; f < fields_.size(); ++f)
    if (fields_[f].column == column && (fields_[f].max_len > 0) == sequence &&
        tables_[field_table_[f]].config().residual_of.empty()) {
      if (found < fields_.size())
        throw Error(fmt::format("column '{}' feeds several {} fields (model.fields[{}] and [{}])",
                                column, sequence ? "sequence" : "pooled", found, f));
      found = f;
    }
  if (found < fields_.size()) return found;
  throw Error(fmt::format("no {} field reads column '{}'", sequence ? "sequence" : "pooled",
                          column));
}

template <class T>
void EmbeddingBagCollection<T>::stage(const Context& ctx, const data::Batch& batch,
                                      DeviceBatch<T>& out) const {
  const int64_t rows = batch.size, Tn = sequence_length_;
  // Host scratch kept between calls (thread_local): a steady-state step allocates nothing.
  // counts: ids per sample in the first sequence field, before truncation.
  thread_local std::vector<int64_t> counts;
  thread_local std::vector<typename DeviceBatch<T>::TableSize> sizes;
  // Pass 1 (host): check the columns and size every table's CSR. A batch of another layout
  // (a column more or less) would feed one column's ids to another's table.
  LOCKSTEP_CHECK(batch.sparse.size() == batch_columns_.size(),
                 "batch has {} sparse columns; the model reads {} ({}), in that order",
                 batch.sparse.size(), batch_columns_.size(), fmt::join(batch_columns_, ", "));
  int first_sequence_field = -1;
  sizes.assign(tables_.size(), {});
  for (size_t t = 0; t < tables_.size(); ++t) {
    const TableBatch& tb = *batches_[t];
    sizes[t].bags = rows * tb.bags_per_sample;
    sizes[t].may_pad = true;
    sizes[t].keyed = tables_[t].dynamic();
    for (int f : tb.fields) {
      const int c = field_column_[f];
      LOCKSTEP_CHECK(c < static_cast<int>(batch.sparse.size()),
                     "batch has {} sparse columns; field '{}' needs column {}", batch.sparse.size(),
                     fields_[f].column, c);
      const data::SparseColumn& col = batch.sparse[c];
      LOCKSTEP_CHECK(static_cast<int64_t>(col.offsets.size()) == rows + 1 &&
                         col.offsets.front() == 0 &&
                         col.offsets.back() == static_cast<int64_t>(col.keys.size()),
                     "column '{}' of the batch is malformed: {} offsets and {} keys for {} rows",
                     fields_[f].column, col.offsets.size(), col.keys.size(), rows);
      if (fields_[f].max_len == 0) {
        sizes[t].nnz += static_cast<int64_t>(col.keys.size());
        continue;
      }
      const bool first = first_sequence_field < 0;
      if (first) {
        first_sequence_field = f;
        counts.resize(rows);
      }
      for (int64_t b = 0; b < rows; ++b) {
        const int64_t n = col.offsets[b + 1] - col.offsets[b];
        if (first) counts[b] = n;
        LOCKSTEP_CHECK(counts[b] == n,
                       "sample {} has {} ids in '{}' but {} in '{}': sequence fields must have "
                       "equal lengths per sample",
                       b, n, fields_[f].column, counts[b], fields_[first_sequence_field].column);
        sizes[t].nnz += std::min(n, Tn);
      }
    }
  }
  out.begin(ctx, batch, sizes, Tn > 0);
  // Pass 2 (host, into the pinned buffer): keys -> rows; sequences newest first. A dynamic
  // table's keys stay keys here, then become positions in the batch's sorted distinct keys.
  for (size_t t = 0; t < tables_.size(); ++t) {
    const TableBatch& tb = *batches_[t];
    const EmbeddingTable<T>& table = tables_[t];
    const bool dynamic = table.dynamic();
    // Hashed tables' keys travel raw and become rows on the device after the copy (below).
    const bool raw = dynamic || table.hashes_keys();
    const auto row_of = [&](uint64_t key) { return raw ? key : table.row_of(key); };
    int64_t* offsets = out.host_offsets(t);
    uint64_t* ids = out.host_ids(t);
    int64_t bag = 0, nnz = 0;
    offsets[0] = 0;
    for (int f : tb.fields) {
      const data::SparseColumn& col = batch.sparse[field_column_[f]];
      if (fields_[f].max_len == 0) {
        for (int64_t b = 1; b <= rows; ++b) offsets[++bag] = nnz + col.offsets[b];
        for (uint64_t key : col.keys) ids[nnz++] = row_of(key);
        continue;
      }
      // Sequence field: bag (b, p) = the p-th most recent id of sample b, or nothing.
      for (int64_t b = 0; b < rows; ++b) {
        const int64_t len = std::min(counts[b], Tn);
        for (int64_t p = 0; p < Tn; ++p) {
          if (p < len) ids[nnz++] = row_of(col.keys[col.offsets[b + 1] - 1 - p]);
          offsets[++bag] = nnz;
        }
      }
    }
    // Padding (DeviceBatch::padded): an id above every row, which hashing (below) and the
    // distinct keys (unique_keys reads the bags' ids only) leave alone: the row count of a
    // hashed table; for a dynamic one, whose ids become positions among at most staged_nnz(t)
    // distinct keys, staged_nnz(t).
    std::fill(ids + nnz, ids + out.staged_nnz(t),
              static_cast<uint64_t>(dynamic ? out.staged_nnz(t) : table.rows()));
  }
  if (Tn > 0) {
    auto& lengths = out.mutable_host_lengths();
    for (int64_t b = 0; b < rows; ++b) lengths[b] = std::min(counts[b], Tn);
  }
  out.finish(ctx, batch);
  // A dynamic table's distinct keys (ascending), its ids as positions among them, and the ids
  // grouped by key for the backward: on the device, one sort per step (kernels/feasign.h).
  for (size_t t = 0; t < tables_.size(); ++t)
    if (tables_[t].dynamic())
      kernels::unique_keys<T>(ctx, sizes[t].nnz, out.staged_nnz(t), out.staged_ids(t),
                              out.staged_keys(t), out.staged_key_count(t), out.staged_key_order(t),
                              out.staged_key_starts(t));
  for (size_t t = 0; t < tables_.size(); ++t)  // key -> row on the device (kernels/key_hash.h)
    if (tables_[t].hashes_keys())
      kernels::hash_keys_to_rows(ctx, sizes[t].nnz, tables_[t].hash_seed(), tables_[t].rows(),
                                 out.staged_ids(t));
}

template <class T>
void EmbeddingBagCollection<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, T* out,
                                        int64_t ld_out, T* seq_out, int64_t ld_seq) {
  LOCKSTEP_CHECK(sequence_length_ == 0 || seq_out != nullptr,
                 "this model has sequence fields: forward() needs a sequence output");
  LOCKSTEP_CHECK(batch.num_tables() == tables_.size(),
                 "the batch was staged for {} tables but this embedding layer has {}: stage it "
                 "with this layer's stage()",
                 batch.num_tables(), tables_.size());
  batch_ = &batch;
  rows_ = batch.size();
  if (has_wide_) {
    wide_.resize(ctx, {std::max<int64_t>(rows_, 1)});
    kernels::fill_constant<T>(ctx, rows_, T(0), wide_.data());
  }
  for (size_t t = 0; t < tables_.size(); ++t) {
    TableBatch& tb = *batches_[t];
    const EmbeddingTable<T>& table = tables_[t];
    const T* weights = table.weights();
    int64_t table_rows = table.rows();
    if (table.dynamic()) {  // the batch's keys, gathered: their embedx rows and lr weights
      // The staged ids bound the distinct keys (their number is on the device).
      table_rows = batch.staged_nnz(t);
      tb.compact.resize(ctx, {std::max<int64_t>(table_rows, 1), table.dim()});
      tb.compact_lr.resize(ctx, {std::max<int64_t>(table_rows, 1)});
      table.dynamic_table()->gather(ctx, batch.staged_keys(t), table_rows, tb.compact.data(),
                                    tb.compact_lr.data(), batch.staged_key_count(t));
      weights = tb.compact.data();
      for (size_t k = 0; k < tb.fields.size(); ++k) {  // every occurrence's lr, field by field
        const int64_t per = fields_[tb.fields[k]].max_len > 0 ? sequence_length_ : 1;
        kernels::wide_lookup_forward<T>(ctx, rows_, per, batch.offsets(t) + rows_ * tb.bag_start[k],
                                        batch.ids(t), tb.compact_lr.data(), table_rows,
                                        wide_.data());
      }
    }
    for (size_t k = 0; k < tb.fields.size(); ++k) {
      const int f = tb.fields[k];
      const bool seq = fields_[f].max_len > 0;
      // The field's bags are a window of the table batch; offsets are absolute positions.
      kernels::pooled_lookup_forward<T>(
          ctx, to_kernel(table.config().pooling), seq ? rows_ * sequence_length_ : rows_,
          table.dim(), weights, table_rows, batch.offsets(t) + rows_ * tb.bag_start[k],
          batch.ids(t), (seq ? seq_out : out) + field_offsets_[f], seq ? ld_seq : ld_out);
    }
  }
}

template <class T>
void EmbeddingBagCollection<T>::backward(const Context& ctx, const T* dout, int64_t ld_dout,
                                         const T* dseq, int64_t ld_seq, const T* dwide) {
  LOCKSTEP_CHECK(sequence_length_ == 0 || dseq != nullptr,
                 "this model has sequence fields: backward() needs their gradient");
  LOCKSTEP_CHECK(batch_ != nullptr, "EmbeddingBagCollection::backward() before forward()");
  const DeviceBatch<T>& batch = *batch_;
  for (size_t t = 0; t < tables_.size(); ++t) {
    TableBatch& tb = *batches_[t];
    EmbeddingTable<T>& table = tables_[t];
    const int64_t dim = table.dim(), bags = batch.bags(t);
    const auto grad_of = [&](int f) {
      return fields_[f].max_len > 0 ? std::pair{dseq + field_offsets_[f], ld_seq}
                                    : std::pair{dout + field_offsets_[f], ld_dout};
    };
    auto [grad, ld] = grad_of(tb.fields[0]);
    if (tb.fields.size() > 1) {  // gather the fields' gradient slices into one (bags, dim) matrix
      tb.dout.resize(ctx, {bags, dim});
      for (size_t k = 0; k < tb.fields.size(); ++k) {
        const int f = tb.fields[k];
        const auto [g, ldg] = grad_of(f);
        const int64_t n = fields_[f].max_len > 0 ? rows_ * sequence_length_ : rows_;
        kernels::copy_2d<T>(ctx, n, dim, g, ldg, tb.dout.data() + rows_ * tb.bag_start[k] * dim,
                            dim);
      }
      grad = tb.dout.data();
      ld = dim;
    }
    SparseGrad<T>& g = table.grad();
    if (table.dynamic()) {
      keyed_gradient(ctx, t, grad, ld, dwide);
      continue;
    }
    // Padding (a row count past every row) needs one more id bit when rows is a power of two.
    const bool padded = batch.padded(t);
    g.reserve(ctx, batch.staged_nnz(t), dim);
    kernels::pooled_lookup_backward<T>(
        ctx, to_kernel(table.config().pooling), bags, dim, batch.offsets(t), batch.ids(t),
        batch.staged_nnz(t), grad, ld, g.ids(), g.rows(), g.count(),
        kernels::id_bits_for(padded ? table.rows() + 1 : table.rows()), padded);
    g.mark_ready();
  }
}

// A dynamic table's gradient, keyed by feasign: per distinct key of the batch (ascending) its
// record [show, click, d lr, d embedx] (DynamicTable), summed over the key's occurrences in the
// grouping unique_keys made when the batch was staged (no sort here): show adds 1, click the
// sample's label and d lr the sample's dwide (the wide term adds every occurrence's lr weight to
// its sample's logit) per occurrence — keyed_lookup_backward's side columns — and d embedx the
// pooled lookup's gradient. Every key of the batch occurs in it, so the record has one row per
// key, u = 0 .. n-1; the keys and n came with the staged batch: nothing is uploaded here.
template <class T>
void EmbeddingBagCollection<T>::keyed_gradient(const Context& ctx, size_t t, const T* grad,
                                               int64_t ld, const T* dwide) {
  TableBatch& tb = *batches_[t];
  EmbeddingTable<T>& table = tables_[t];
  const DeviceBatch<T>& batch = *batch_;
  const int64_t dim = table.dim(), width = table.grad_width(), bags = batch.bags(t);
  static_assert(kDynamicRecordExtra == 3, "the side columns are the record's show, click, d lr");
  // The ids staged (padding included) bound the distinct keys, whose number is on the device.
  const int64_t n = batch.staged_nnz(t);
  tb.bag_stats.resize(ctx, {std::max<int64_t>(bags, 1), kDynamicRecordExtra});
  for (size_t k = 0; k < tb.fields.size(); ++k) {
    const int64_t per = fields_[tb.fields[k]].max_len > 0 ? sequence_length_ : 1;
    kernels::feasign_bag_stats<T>(
        ctx, rows_, per, batch.labels(), dwide,
        tb.bag_stats.data() + rows_ * tb.bag_start[k] * kDynamicRecordExtra);
  }
  SparseGrad<T>& g = table.grad();
  g.reserve(ctx, n, width);
  kernels::keyed_lookup_backward<T>(ctx, to_kernel(table.config().pooling), bags, dim,
                                    batch.offsets(t), n, batch.padded(t), batch.staged_key_order(t),
                                    batch.staged_key_starts(t), batch.staged_key_count(t), grad, ld,
                                    kDynamicRecordExtra, tb.bag_stats.data(), g.rows(), width);
  copy_bytes(ctx, g.ids(), ctx.device(), batch.staged_keys(t), ctx.device(),
             static_cast<size_t>(n) * sizeof(uint64_t));
  copy_bytes(ctx, g.count(), ctx.device(), batch.staged_key_count(t), ctx.device(),
             sizeof(int64_t));
  g.mark_ready();
}

template <class T>
void EmbeddingBagCollection<T>::apply_gradients(const Context& ctx, T grad_scale, int64_t step) {
  for (auto& t : tables_) t.apply_gradients(ctx, grad_scale, step);
}

template class EmbeddingBagCollection<float>;
template class EmbeddingBagCollection<double>;

}  // namespace lockstep::embedding

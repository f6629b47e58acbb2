#include "lockstep/models/embedding_model.h"

#include "kernels/copy.h"

namespace lockstep::models {

void validate_embedding_layout(const std::vector<embedding::TableConfig>& tables,
                               const std::vector<embedding::FieldConfig>& fields) {
  LOCKSTEP_CHECK_KEY(!tables.empty(), "model.tables",
                     "model.tables is empty: define at least one embedding table "
                     "([[model.tables]] with a name and rows)");
  for (size_t i = 0; i < tables.size(); ++i) tables[i].validate(fmt::format("model.tables[{}]", i));
  embedding::check_layout(tables, fields);
}

void validate_logit_mlp(const nn::MlpConfig& mlp, const std::string& mlp_key) {
  mlp.validate(mlp_key);
  LOCKSTEP_CHECK_KEY(mlp.widths.back() == 1, mlp_key + ".widths",
                     "{}.widths ends in {}: the last layer must have width 1 (the logit)", mlp_key,
                     mlp.widths.back());
}

void validate_optimizers(const nn::OptimizerConfig& dense, const nn::OptimizerConfig& sparse) {
  dense.validate("optimizer");
  sparse.validate("sparse_optimizer");
  LOCKSTEP_CHECK_KEY(sparse.kind != nn::OptimizerKind::Sgd, "sparse_optimizer.kind",
                     "sparse_optimizer.kind = 'sgd' is not supported for embedding tables: use "
                     "adagrad or adam");
}

template <class T>
EmbeddingModel<T>::EmbeddingModel(const EmbeddingSpec& spec,
                                  const std::vector<std::string>& sparse_columns,
                                  int64_t num_dense)
    : num_dense_(spec.use_dense ? num_dense : 0),
      embeddings_(std::make_unique<embedding::EmbeddingBagCollection<T>>(
          spec.tables, spec.fields, sparse_columns, spec.sparse_optimizer)) {}

template <class T>
EmbeddingModel<T>::~EmbeddingModel() = default;

template <class T>
void EmbeddingModel<T>::allocate(const Context& ctx, uint64_t seed,
                                 const nn::OptimizerConfig& dense_optimizer) {
  params_.allocate(ctx, seed);
  embeddings_->allocate(ctx, seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(dense_optimizer, ctx,
                                                       params_.trainable_size());
}

template <class T>
void EmbeddingModel<T>::embed(const Context& ctx, const DeviceBatch<T>& batch, T* x, int64_t ldx,
                              int64_t pooled_at) {
  rows_ = batch.size();
  const int64_t Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  T* seq = nullptr;
  if (Tn > 0) {
    seq_.resize(ctx, {rows_ * Tn, ws});
    seq = seq_.data();
  }
  embeddings_->forward(ctx, batch, x + pooled_at, ldx, seq, ws);
  batch.copy_dense(ctx, num_dense_, x + pooled_at + embeddings_->output_width(), ldx);
}

template <class T>
T* EmbeddingModel<T>::zeroed_sequence_grad(const Context& ctx) {
  const int64_t Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  if (Tn == 0) return nullptr;
  dseq_.resize(ctx, {rows_ * Tn, ws});
  zero_bytes(ctx, dseq_.data(), dseq_.bytes());
  return dseq_.data();
}

template <class T>
void EmbeddingModel<T>::embed_backward(const Context& ctx, const T* dx, int64_t lddx,
                                       int64_t pooled_at) {
  const bool seq = embeddings_->sequence_length() > 0;
  embeddings_->backward(ctx, dx + pooled_at, lddx, seq ? dseq_.data() : nullptr,
                        embeddings_->sequence_width(), dwide_);
}

template <class T>
const T* EmbeddingModel<T>::with_wide(const Context& ctx, const T* logits) {
  if (!embeddings_->has_wide()) return logits;
  wide_logits_.resize(ctx, {std::max<int64_t>(rows_, 1)});
  kernels::copy_2d<T>(ctx, rows_, 1, logits, 1, wide_logits_.data(), 1);
  kernels::copy_2d<T>(ctx, rows_, 1, embeddings_->wide(), 1, wide_logits_.data(), 1,
                      /*accumulate=*/true);
  return wide_logits_.data();
}

template <class T>
void EmbeddingModel<T>::apply_gradients(const Context& ctx, T grad_scale) {
  optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template class EmbeddingModel<float>;
template class EmbeddingModel<double>;

}  // namespace lockstep::models

#include "lockstep/models/embedding_mlp.h"

#include "models/dense_input.h"

namespace lockstep::models {

void EmbeddingMlpConfig::validate() const {
  LOCKSTEP_CHECK(!tables.empty(), "model.tables is empty: define at least one embedding table");
  for (size_t i = 0; i < tables.size(); ++i) tables[i].validate(fmt::format("model.tables[{}]", i));
  for (size_t i = 0; i < fields.size(); ++i)
    LOCKSTEP_CHECK(fields[i].max_len == 0,
                   "model.fields[{}] (column '{}') has max_len {}: the embedding_mlp model pools "
                   "every field; use kind = \"din\" or \"bst\" for sequence fields",
                   i, fields[i].column, fields[i].max_len);
  mlp.validate("model.mlp");
  LOCKSTEP_CHECK(mlp.widths.back() == 1,
                 "model.mlp.widths ends in {}: the last layer must have width 1 (the logit)",
                 mlp.widths.back());
  dense_optimizer.validate("optimizer");
  sparse_optimizer.validate("sparse_optimizer");
}

template <class T>
EmbeddingMlp<T>::EmbeddingMlp(EmbeddingMlpConfig config,
                              const std::vector<std::string>& sparse_columns, int64_t num_dense,
                              const Context& ctx)
    : config_(std::move(config)), num_dense_(config_.use_dense ? num_dense : 0) {
  config_.validate();
  embeddings_ = std::make_unique<embedding::EmbeddingBagCollection<T>>(
      config_.tables, config_.fields, sparse_columns, config_.sparse_optimizer);
  input_width_ = embeddings_->output_width() + num_dense_;
  mlp_ = std::make_unique<nn::Mlp<T>>(params_, "mlp", input_width_, config_.mlp);
  params_.allocate(ctx, config_.seed);
  embeddings_->allocate(ctx, config_.seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(config_.dense_optimizer, ctx,
                                                       params_.trainable_size());
}

template <class T>
EmbeddingMlp<T>::~EmbeddingMlp() = default;

template <class T>
const T* EmbeddingMlp<T>::forward(const Context& ctx, const data::Batch& batch, bool training) {
  rows_ = batch.size;
  embeddings_->set_batch(ctx, batch);
  input_.resize(ctx, {rows_, input_width_});
  embeddings_->forward(ctx, input_.data(), input_width_);
  place_dense_features(ctx, batch, num_dense_, dense_, input_.data() + embeddings_->output_width(),
                       input_width_);
  return mlp_->forward(ctx, rows_, input_.data(), training);
}

template <class T>
void EmbeddingMlp<T>::backward(const Context& ctx, const T* dlogits) {
  dinput_.resize(ctx, {rows_, input_width_});
  mlp_->backward(ctx, rows_, input_.data(), dlogits, dinput_.data());
  embeddings_->backward(ctx, dinput_.data(), input_width_);
}

template <class T>
void EmbeddingMlp<T>::apply_gradients(const Context& ctx, T grad_scale) {
  optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template class EmbeddingMlp<float>;
template class EmbeddingMlp<double>;

}  // namespace lockstep::models

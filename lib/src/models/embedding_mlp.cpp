#include "lockstep/models/embedding_mlp.h"

namespace lockstep::models {

void EmbeddingMlpConfig::validate() const {
  validate_embedding_layout(tables, fields);
  for (size_t i = 0; i < fields.size(); ++i)
    LOCKSTEP_CHECK_KEY(fields[i].max_len == 0, fmt::format("model.fields[{}].max_len", i),
                       "model.fields[{}].max_len = {} (column '{}'): the embedding_mlp model "
                       "pools every field; use kind = \"din\" or \"bst\" for sequence fields",
                       i, fields[i].max_len, fields[i].column);
  validate_logit_mlp(mlp, "model.mlp");
  validate_optimizers(dense_optimizer, sparse_optimizer);
}

template <class T>
EmbeddingMlp<T>::EmbeddingMlp(EmbeddingMlpConfig config,
                              const std::vector<std::string>& sparse_columns, int64_t num_dense,
                              const Context& ctx)
    : EmbeddingModel<T>(validated_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)) {
  input_width_ = this->embeddings_->output_width() + this->num_dense_;
  mlp_ = std::make_unique<nn::Mlp<T>>(this->params_, "mlp", input_width_, config_.mlp);
  this->allocate(ctx, config_.seed, config_.dense_optimizer);
}

template <class T>
EmbeddingMlp<T>::~EmbeddingMlp() = default;

template <class T>
const T* EmbeddingMlp<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) {
  // input = [pooled fields | dense]
  input_.resize(ctx, {batch.size(), input_width_});
  this->embed(ctx, batch, input_.data(), input_width_, 0);
  return this->logits_ = mlp_->forward(ctx, this->rows_, input_.data(), training);
}

template <class T>
void EmbeddingMlp<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t rows = this->rows_;
  dinput_.resize(ctx, {rows, input_width_});
  mlp_->backward(ctx, rows, input_.data(), dlogits, dinput_.data());
  this->embed_backward(ctx, dinput_.data(), input_width_, 0);
}

template class EmbeddingMlp<float>;
template class EmbeddingMlp<double>;

}  // namespace lockstep::models

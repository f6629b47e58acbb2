#include "lockstep/models/din.h"

#include "models/dense_input.h"
#include "models/field_layout.h"

namespace lockstep::models {

void DinConfig::validate() const {
  LOCKSTEP_CHECK(!tables.empty(), "model.tables is empty: define at least one embedding table");
  for (size_t i = 0; i < tables.size(); ++i) tables[i].validate(fmt::format("model.tables[{}]", i));
  LOCKSTEP_CHECK(!query.empty() && query.size() == keys.size(),
                 "model.din.query has {} fields and model.din.keys {}: give one key (history) "
                 "field per query (target) field, in the same order",
                 query.size(), keys.size());
  attention.validate("model.din.attention");
  mlp.validate("model.mlp");
  LOCKSTEP_CHECK(mlp.widths.back() == 1,
                 "model.mlp.widths ends in {}: the last layer must have width 1 (the logit)",
                 mlp.widths.back());
  dense_optimizer.validate("optimizer");
  sparse_optimizer.validate("sparse_optimizer");
}

template <class T>
Din<T>::Din(DinConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
            const Context& ctx)
    : config_(std::move(config)), num_dense_(config_.use_dense ? num_dense : 0) {
  config_.validate();
  embeddings_ = std::make_unique<embedding::EmbeddingBagCollection<T>>(
      config_.tables, config_.fields, sparse_columns, config_.sparse_optimizer);
  LOCKSTEP_CHECK(embeddings_->sequence_length() > 0,
                 "the din model needs history fields: give the fields in model.din.keys a "
                 "max_len > 0");
  const FieldSpan query = consecutive_fields(*embeddings_, config_.query, false, "model.din.query");
  const FieldSpan keys = consecutive_fields(*embeddings_, config_.keys, true, "model.din.keys");
  check_paired_widths(*embeddings_, config_.query, config_.keys, "model.din");
  dim_ = query.width;
  q_col_ = dim_ + query.offset;  // the pooled fields sit after the attention output in the input
  k_col_ = keys.offset;
  width_ = dim_ + embeddings_->output_width() + num_dense_;
  attention_ = std::make_unique<nn::DinAttention<T>>(params_, "din", dim_, config_.attention);
  mlp_ = std::make_unique<nn::Mlp<T>>(params_, "mlp", width_, config_.mlp);
  params_.allocate(ctx, config_.seed);
  embeddings_->allocate(ctx, config_.seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(config_.dense_optimizer, ctx,
                                                       params_.trainable_size());
}

template <class T>
Din<T>::~Din() = default;

template <class T>
const T* Din<T>::forward(const Context& ctx, const data::Batch& batch, bool training) {
  rows_ = batch.size;
  const int64_t Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  embeddings_->set_batch(ctx, batch);
  // x = [attention output (dim) | pooled fields | dense], seq = (B, T, ws) history.
  x_.resize(ctx, {rows_, width_});
  seq_.resize(ctx, {rows_ * Tn, ws});
  embeddings_->forward(ctx, x_.data() + dim_, width_, seq_.data(), ws);
  place_dense_features(ctx, batch, num_dense_, dense_, x_.data() + dim_ + embeddings_->output_width(),
                       width_);
  attention_->forward(ctx, rows_, Tn, x_.data() + q_col_, width_, seq_.data() + k_col_, ws,
                      embeddings_->device_lengths(), x_.data(), width_, training);
  return mlp_->forward(ctx, rows_, x_.data(), training);
}

template <class T>
void Din<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t Tn = embeddings_->sequence_length(), ws = embeddings_->sequence_width();
  dx_.resize(ctx, {rows_, width_});
  mlp_->backward(ctx, rows_, x_.data(), dlogits, dx_.data());
  dseq_.resize(ctx, {rows_ * Tn, ws});
  zero_bytes(ctx, dseq_.data(), dseq_.bytes());
  // The target receives gradient both through the MLP (already in dx) and the attention (+=).
  attention_->backward(ctx, dx_.data(), width_, dx_.data() + q_col_, width_, dseq_.data() + k_col_,
                       ws);
  embeddings_->backward(ctx, dx_.data() + dim_, width_, dseq_.data(), ws);
}

template <class T>
void Din<T>::apply_gradients(const Context& ctx, T grad_scale) {
  optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template class Din<float>;
template class Din<double>;

}  // namespace lockstep::models

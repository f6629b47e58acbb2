#include "lockstep/models/bst.h"

#include "models/dense_input.h"
#include "models/field_layout.h"

namespace lockstep::models {

void BstConfig::validate() const {
  LOCKSTEP_CHECK(!tables.empty(), "model.tables is empty: define at least one embedding table");
  for (size_t i = 0; i < tables.size(); ++i) tables[i].validate(fmt::format("model.tables[{}]", i));
  LOCKSTEP_CHECK(!target.empty() && target.size() == sequence.size(),
                 "model.bst.target has {} fields and model.bst.sequence {}: give one history field "
                 "per target field, in the same order",
                 target.size(), sequence.size());
  check_range("model.bst.blocks", blocks, int64_t{1}, int64_t{64});
  mlp.validate("model.mlp");
  LOCKSTEP_CHECK(mlp.widths.back() == 1,
                 "model.mlp.widths ends in {}: the last layer must have width 1 (the logit)",
                 mlp.widths.back());
  dense_optimizer.validate("optimizer");
  sparse_optimizer.validate("sparse_optimizer");
}

template <class T>
Bst<T>::Bst(BstConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
            const Context& ctx)
    : config_(std::move(config)), num_dense_(config_.use_dense ? num_dense : 0) {
  config_.validate();
  embeddings_ = std::make_unique<embedding::EmbeddingBagCollection<T>>(
      config_.tables, config_.fields, sparse_columns, config_.sparse_optimizer);
  LOCKSTEP_CHECK(embeddings_->sequence_length() > 0,
                 "the bst model needs history fields: give the fields in model.bst.sequence a "
                 "max_len > 0");
  const FieldSpan target = consecutive_fields(*embeddings_, config_.target, false, "model.bst.target");
  const FieldSpan seq = consecutive_fields(*embeddings_, config_.sequence, true, "model.bst.sequence");
  check_paired_widths(*embeddings_, config_.target, config_.sequence, "model.bst");
  width_tok_ = target.width;
  t_col_ = target.offset;
  s_col_ = seq.offset;
  if (!config_.time_gap.empty()) {
    const FieldSpan gap = consecutive_fields(*embeddings_, {config_.time_gap}, true, "model.bst.time_gap");
    LOCKSTEP_CHECK(gap.width == width_tok_,
                   "model.bst.time_gap field '{}' is {} wide: it must have the token width {}",
                   config_.time_gap, gap.width, width_tok_);
    g_col_ = gap.offset;
  }
  encoder_ = std::make_unique<nn::BstEncoder<T>>(
      params_, "bst", width_tok_, embeddings_->sequence_length(),
      nn::BstEncoderConfig{config_.blocks, config_.transformer, config_.output});
  out_width_ = encoder_->output_width();
  width_ = out_width_ + embeddings_->output_width() + num_dense_;
  mlp_ = std::make_unique<nn::Mlp<T>>(params_, "mlp", width_, config_.mlp);
  params_.allocate(ctx, config_.seed);
  embeddings_->allocate(ctx, config_.seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(config_.dense_optimizer, ctx,
                                                       params_.trainable_size());
}

template <class T>
Bst<T>::~Bst() = default;

template <class T>
const T* Bst<T>::forward(const Context& ctx, const data::Batch& batch, bool training) {
  rows_ = batch.size;
  const int64_t B = rows_, Tn = embeddings_->sequence_length();
  const int64_t ws = embeddings_->sequence_width(), pooled_at = out_width_;
  embeddings_->set_batch(ctx, batch);
  x_.resize(ctx, {B, width_});
  seq_.resize(ctx, {B * Tn, ws});
  embeddings_->forward(ctx, x_.data() + pooled_at, width_, seq_.data(), ws);
  place_dense_features(ctx, batch, num_dense_, dense_,
                       x_.data() + pooled_at + embeddings_->output_width(), width_);
  encoder_->forward(ctx, B, x_.data() + pooled_at + t_col_, width_, seq_.data() + s_col_,
                    g_col_ >= 0 ? seq_.data() + g_col_ : nullptr, ws, embeddings_->lengths(),
                    x_.data(), width_, training);
  return mlp_->forward(ctx, B, x_.data(), training);
}

template <class T>
void Bst<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t B = rows_, Tn = embeddings_->sequence_length();
  const int64_t ws = embeddings_->sequence_width(), pooled_at = out_width_;
  dx_.resize(ctx, {B, width_});
  mlp_->backward(ctx, B, x_.data(), dlogits, dx_.data());
  dseq_.resize(ctx, {B * Tn, ws});
  zero_bytes(ctx, dseq_.data(), dseq_.bytes());
  encoder_->backward(ctx, dx_.data(), width_, dx_.data() + pooled_at + t_col_, width_,
                     dseq_.data() + s_col_, g_col_ >= 0 ? dseq_.data() + g_col_ : nullptr, ws);
  embeddings_->backward(ctx, dx_.data() + pooled_at, width_, dseq_.data(), ws);
}

template <class T>
void Bst<T>::apply_gradients(const Context& ctx, T grad_scale) {
  optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template class Bst<float>;
template class Bst<double>;

}  // namespace lockstep::models

#include "lockstep/models/bst.h"

#include "models/field_layout.h"

namespace lockstep::models {

void BstConfig::validate() const {
  validate_embedding_layout(tables, fields);
  LOCKSTEP_CHECK_KEY(!target.empty(), "model.bst.target",
                     "model.bst.target is empty: name the pooled fields of the target token, e.g. "
                     "[\"item\", \"item_cat\"]");
  LOCKSTEP_CHECK_KEY(target.size() == sequence.size(), "model.bst.sequence",
                     "model.bst.sequence has {} fields and model.bst.target {}: give one history "
                     "field per target field, in the same order",
                     sequence.size(), target.size());
  check_range("model.bst.blocks", blocks, int64_t{1}, int64_t{64});
  validate_logit_mlp(mlp, "model.mlp");
  validate_optimizers(dense_optimizer, sparse_optimizer);
}

template <class T>
Bst<T>::Bst(BstConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
            const Context& ctx)
    : EmbeddingModel<T>(validated_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)) {
  const auto& emb = *this->embeddings_;
  LOCKSTEP_CHECK_KEY(emb.sequence_length() > 0, "model.bst.sequence",
                     "model.bst.sequence: the bst model needs history fields, and no field is a "
                     "sequence: give the [[model.fields]] of the sequence a max_len > 0");
  const FieldSpan target = consecutive_fields(emb, config_.target, false, "model.bst.target");
  const FieldSpan seq = consecutive_fields(emb, config_.sequence, true, "model.bst.sequence");
  check_paired_widths(emb, config_.target, "model.bst.target", config_.sequence,
                      "model.bst.sequence");
  width_tok_ = target.width;
  t_col_ = target.offset;
  s_col_ = seq.offset;
  if (!config_.time_gap.empty()) {
    const FieldSpan gap = consecutive_fields(emb, {config_.time_gap}, true, "model.bst.time_gap",
                                             /*list=*/false);
    LOCKSTEP_CHECK_KEY(gap.width == width_tok_, "model.bst.time_gap",
                       "model.bst.time_gap = '{}' is {} wide: it must have the token width {} "
                       "(the widths of model.bst.target together)",
                       config_.time_gap, gap.width, width_tok_);
    g_col_ = gap.offset;
  }
  // Here rather than in the encoder, so that the error names the key of the file.
  config_.transformer.validate("model.bst.transformer", width_tok_);
  encoder_ = std::make_unique<nn::BstEncoder<T>>(
      this->params_, "bst", width_tok_, emb.sequence_length(),
      nn::BstEncoderConfig{config_.blocks, config_.transformer, config_.output});
  out_width_ = encoder_->output_width();
  width_ = out_width_ + emb.output_width() + this->num_dense_;
  mlp_ = std::make_unique<nn::Mlp<T>>(this->params_, "mlp", width_, config_.mlp);
  this->allocate(ctx, config_.seed, config_.dense_optimizer);
}

template <class T>
Bst<T>::~Bst() = default;

template <class T>
const T* Bst<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) {
  const int64_t B = batch.size(), ws = this->embeddings_->sequence_width();
  const int64_t pooled_at = out_width_;
  // x = [read-out | pooled fields | dense], seq_ = (B, T, ws) history.
  x_.resize(ctx, {B, width_});
  this->embed(ctx, batch, x_.data(), width_, pooled_at);
  const T* seq = this->seq_.data();
  encoder_->forward(ctx, B, x_.data() + pooled_at + t_col_, width_, seq + s_col_,
                    g_col_ >= 0 ? seq + g_col_ : nullptr, ws, batch.token_lengths(), x_.data(),
                    width_, training);
  return this->logits_ = this->with_wide(ctx, mlp_->forward(ctx, B, x_.data(), training));
}

template <class T>
void Bst<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t B = this->rows_, ws = this->embeddings_->sequence_width();
  const int64_t pooled_at = out_width_;
  this->set_wide_grad(dlogits);
  dx_.resize(ctx, {B, width_});
  mlp_->backward(ctx, B, x_.data(), dlogits, dx_.data());
  T* dseq = this->zeroed_sequence_grad(ctx);
  encoder_->backward(ctx, dx_.data(), width_, dx_.data() + pooled_at + t_col_, width_,
                     dseq + s_col_, g_col_ >= 0 ? dseq + g_col_ : nullptr, ws);
  this->embed_backward(ctx, dx_.data(), width_, pooled_at);
}

template class Bst<float>;
template class Bst<double>;

}  // namespace lockstep::models

#include "lockstep/models/din.h"

#include "models/field_layout.h"

namespace lockstep::models {

void DinConfig::validate() const {
  validate_embedding_layout(tables, fields);
  LOCKSTEP_CHECK_KEY(!query.empty(), "model.din.query",
                     "model.din.query is empty: name the pooled fields of the target, e.g. "
                     "[\"item\", \"item_cat\"]");
  LOCKSTEP_CHECK_KEY(query.size() == keys.size(), "model.din.keys",
                     "model.din.keys has {} fields and model.din.query {}: give one key (history) "
                     "field per query (target) field, in the same order",
                     keys.size(), query.size());
  attention.validate("model.din.attention");
  validate_logit_mlp(mlp, "model.mlp");
  validate_optimizers(dense_optimizer, sparse_optimizer);
}

template <class T>
Din<T>::Din(DinConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
            const Context& ctx)
    : EmbeddingModel<T>(validated_embedding_spec(config), sparse_columns, num_dense),
      config_(std::move(config)) {
  const auto& emb = *this->embeddings_;
  LOCKSTEP_CHECK_KEY(emb.sequence_length() > 0, "model.din.keys",
                     "model.din.keys: the din model needs history fields, and no field is a "
                     "sequence: give the [[model.fields]] of the keys a max_len > 0");
  const FieldSpan query = consecutive_fields(emb, config_.query, false, "model.din.query");
  const FieldSpan keys = consecutive_fields(emb, config_.keys, true, "model.din.keys");
  check_paired_widths(emb, config_.query, "model.din.query", config_.keys, "model.din.keys");
  dim_ = query.width;
  q_col_ = dim_ + query.offset;  // the pooled fields sit after the attention output in the input
  k_col_ = keys.offset;
  width_ = dim_ + emb.output_width() + this->num_dense_;
  attention_ = std::make_unique<nn::DinAttention<T>>(this->params_, "din", dim_, config_.attention);
  mlp_ = std::make_unique<nn::Mlp<T>>(this->params_, "mlp", width_, config_.mlp);
  this->allocate(ctx, config_.seed, config_.dense_optimizer);
}

template <class T>
Din<T>::~Din() = default;

template <class T>
const T* Din<T>::forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) {
  const int64_t B = batch.size(), Tn = this->embeddings_->sequence_length();
  const int64_t ws = this->embeddings_->sequence_width();
  // x = [attention output (dim) | pooled fields | dense], seq_ = (B, T, ws) history.
  x_.resize(ctx, {B, width_});
  this->embed(ctx, batch, x_.data(), width_, dim_);
  attention_->forward(ctx, B, Tn, x_.data() + q_col_, width_, this->seq_.data() + k_col_, ws,
                      batch.lengths(), x_.data(), width_, training);
  return this->logits_ = this->with_wide(ctx, mlp_->forward(ctx, B, x_.data(), training));
}

template <class T>
void Din<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t B = this->rows_, ws = this->embeddings_->sequence_width();
  this->set_wide_grad(dlogits);
  dx_.resize(ctx, {B, width_});
  mlp_->backward(ctx, B, x_.data(), dlogits, dx_.data());
  T* dseq = this->zeroed_sequence_grad(ctx);
  // The target receives gradient both through the MLP (already in dx) and the attention (+=).
  attention_->backward(ctx, dx_.data(), width_, dx_.data() + q_col_, width_, dseq + k_col_, ws);
  this->embed_backward(ctx, dx_.data(), width_, dim_);
}

template class Din<float>;
template class Din<double>;

}  // namespace lockstep::models

#include "lockstep/models/bst.h"

#include "kernels/attention.h"
#include "kernels/bias.h"
#include "kernels/copy.h"
#include "models/dense_input.h"
#include "models/field_layout.h"

namespace lockstep::models {

const char* bst_output_name(BstOutput o) {
  switch (o) {
    case BstOutput::Target: return "target";
    case BstOutput::Mean: return "mean";
    case BstOutput::Concat: return "concat";
  }
  return "?";
}

BstOutput parse_bst_output(std::string_view name, std::string_view field) {
  for (auto o : {BstOutput::Target, BstOutput::Mean, BstOutput::Concat})
    if (name == bst_output_name(o)) return o;
  throw Error(fmt::format("{} = '{}' is not a read-out: use target, mean or concat", field, name));
}

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
    const size_t f = embeddings_->field_index(config_.time_gap);
    LOCKSTEP_CHECK(embeddings_->fields()[f].max_len > 0 && field_width(*embeddings_, f) == width_tok_,
                   "model.bst.time_gap field '{}' must be a sequence field {} wide (the token width)",
                   config_.time_gap, width_tok_);
    g_col_ = embeddings_->field_offset(f);
  }
  const int64_t L = embeddings_->sequence_length() + 1;
  out_width_ = config_.output == BstOutput::Concat ? L * width_tok_ : width_tok_;
  width_ = out_width_ + embeddings_->output_width() + num_dense_;
  position_ = params_.add("bst.position", {L, width_tok_}, nn::Init::uniform(-0.05f, 0.05f));
  for (int64_t b = 0; b < config_.blocks; ++b)
    blocks_.push_back(std::make_unique<nn::TransformerBlock<T>>(
        params_, fmt::format("bst.block{}", b), width_tok_, config_.transformer));
  mlp_ = std::make_unique<nn::Mlp<T>>(params_, "mlp", width_, config_.mlp);
  params_.allocate(ctx, config_.seed);
  embeddings_->allocate(ctx, config_.seed);
  optimizer_ = std::make_unique<nn::DenseOptimizer<T>>(config_.dense_optimizer, ctx,
                                                       params_.trainable_size());
  tokens_.resize(blocks_.size() + 1);
}

template <class T>
Bst<T>::~Bst() = default;

template <class T>
const T* Bst<T>::forward(const Context& ctx, const data::Batch& batch, bool training) {
  rows_ = batch.size;
  const int64_t B = rows_, Tn = embeddings_->sequence_length(), L = Tn + 1, W = width_tok_;
  const int64_t ws = embeddings_->sequence_width(), pooled_at = out_width_;
  embeddings_->set_batch(ctx, batch);
  x_.resize(ctx, {B, width_});
  seq_.resize(ctx, {B * Tn, ws});
  embeddings_->forward(ctx, x_.data() + pooled_at, width_, seq_.data(), ws);
  place_dense_features(ctx, batch, num_dense_, dense_, x_.data() + pooled_at + embeddings_->output_width(),
                       width_);
  // Tokens: target at position 0, history (newest first) at 1..T, + position embeddings.
  for (auto& t : tokens_) t.resize(ctx, {B * L, W});
  T* z = tokens_[0].data();
  kernels::copy_2d<T>(ctx, B, W, x_.data() + pooled_at + t_col_, width_, z, L * W);
  for (int64_t t = 0; t < Tn; ++t) {
    kernels::copy_2d<T>(ctx, B, W, seq_.data() + t * ws + s_col_, Tn * ws, z + (1 + t) * W, L * W);
    if (g_col_ >= 0)
      kernels::copy_2d<T>(ctx, B, W, seq_.data() + t * ws + g_col_, Tn * ws, z + (1 + t) * W, L * W,
                          /*accumulate=*/true);
  }
  kernels::bias_add<T>(ctx, B, L * W, params_.value(position_), z);
  host_tok_lengths_.resize(B);
  for (int64_t b = 0; b < B; ++b) host_tok_lengths_[b] = embeddings_->lengths()[b] + 1;
  upload(ctx, host_tok_lengths_, tok_lengths_);
  for (size_t k = 0; k < blocks_.size(); ++k)
    blocks_[k]->forward(ctx, B, L, tok_lengths_.data(), tokens_[k].data(), tokens_[k + 1].data(),
                        training);
  const T* y = tokens_.back().data();
  switch (config_.output) {
    case BstOutput::Target: kernels::copy_2d<T>(ctx, B, W, y, L * W, x_.data(), width_); break;
    case BstOutput::Mean:
      host_mean_weights_.assign(B * L, T(0));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < host_tok_lengths_[b]; ++t)
          host_mean_weights_[b * L + t] = T(1) / static_cast<T>(host_tok_lengths_[b]);
      upload(ctx, host_mean_weights_, mean_weights_);
      kernels::weighted_sum_forward<T>(ctx, B, L, W, tok_lengths_.data(), mean_weights_.data(), y,
                                       W, x_.data(), width_);
      break;
    case BstOutput::Concat:
      masked_.resize(ctx, {B * L, W});
      copy_bytes(ctx, masked_.data(), ctx.device(), y, ctx.device(), masked_.bytes());
      kernels::mask_positions<T>(ctx, B, L, W, tok_lengths_.data(), masked_.data(), W);
      kernels::copy_2d<T>(ctx, B, L * W, masked_.data(), L * W, x_.data(), width_);
      break;
  }
  return mlp_->forward(ctx, B, x_.data(), training);
}

template <class T>
void Bst<T>::backward(const Context& ctx, const T* dlogits) {
  const int64_t B = rows_, Tn = embeddings_->sequence_length(), L = Tn + 1, W = width_tok_;
  const int64_t ws = embeddings_->sequence_width(), pooled_at = out_width_;
  dx_.resize(ctx, {B, width_});
  mlp_->backward(ctx, B, x_.data(), dlogits, dx_.data());
  dtok_a_.resize(ctx, {B * L, W});
  dtok_b_.resize(ctx, {B * L, W});
  zero_bytes(ctx, dtok_a_.data(), dtok_a_.bytes());
  switch (config_.output) {
    case BstOutput::Target:
      kernels::copy_2d<T>(ctx, B, W, dx_.data(), width_, dtok_a_.data(), L * W);
      break;
    case BstOutput::Mean:
      dweights_.resize(ctx, {B, L});
      kernels::weighted_sum_backward<T>(ctx, B, L, W, tok_lengths_.data(), mean_weights_.data(),
                                        tokens_.back().data(), W, dx_.data(), width_,
                                        dweights_.data(), dtok_a_.data(), W);
      break;
    case BstOutput::Concat:
      kernels::copy_2d<T>(ctx, B, L * W, dx_.data(), width_, dtok_a_.data(), L * W);
      kernels::mask_positions<T>(ctx, B, L, W, tok_lengths_.data(), dtok_a_.data(), W);
      break;
  }
  T* g = dtok_a_.data();
  T* other = dtok_b_.data();
  for (size_t k = blocks_.size(); k-- > 0;) {
    blocks_[k]->backward(ctx, g, other);
    std::swap(g, other);
  }
  // g = d(tokens before the blocks).
  kernels::bias_grad<T>(ctx, B, L * W, g, params_.grad(position_));
  dseq_.resize(ctx, {B * Tn, ws});
  zero_bytes(ctx, dseq_.data(), dseq_.bytes());
  for (int64_t t = 0; t < Tn; ++t) {
    kernels::copy_2d<T>(ctx, B, W, g + (1 + t) * W, L * W, dseq_.data() + t * ws + s_col_, Tn * ws);
    if (g_col_ >= 0)
      kernels::copy_2d<T>(ctx, B, W, g + (1 + t) * W, L * W, dseq_.data() + t * ws + g_col_, Tn * ws);
  }
  kernels::copy_2d<T>(ctx, B, W, g, L * W, dx_.data() + pooled_at + t_col_, width_,
                      /*accumulate=*/true);
  embeddings_->backward(ctx, dx_.data() + pooled_at, width_, dseq_.data(), ws);
}

template <class T>
void Bst<T>::apply_gradients(const Context& ctx, T grad_scale) {
  optimizer_->step(ctx, params_.values(), params_.grads(), grad_scale);
  embeddings_->apply_gradients(ctx, grad_scale, optimizer_->step_count());
}

template <class T>
std::vector<embedding::EmbeddingTable<T>*> Bst<T>::tables() {
  std::vector<embedding::EmbeddingTable<T>*> out;
  for (auto& t : embeddings_->tables()) out.push_back(&t);
  return out;
}

template class Bst<float>;
template class Bst<double>;

}  // namespace lockstep::models

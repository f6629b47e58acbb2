#include "lockstep/nn/bst_encoder.h"

#include "kernels/softmax.h"
#include "kernels/weighted_sum.h"
#include "kernels/bias.h"
#include "kernels/copy.h"

namespace lockstep::nn {

const char* bst_readout_name(BstReadout o) {
  switch (o) {
    case BstReadout::Target: return "target";
    case BstReadout::Mean: return "mean";
    case BstReadout::Concat: return "concat";
  }
  return "?";
}

BstReadout parse_bst_readout(std::string_view name, std::string_view field) {
  for (auto o : {BstReadout::Target, BstReadout::Mean, BstReadout::Concat})
    if (name == bst_readout_name(o)) return o;
  throw Error(fmt::format("{} = '{}' is not a read-out: use target, mean or concat", field, name));
}

template <class T>
BstEncoder<T>::BstEncoder(ParamSet<T>& params, const std::string& name, int64_t token_width,
                          int64_t history_length, BstEncoderConfig config)
    : params_(&params), W_(token_width), Tn_(history_length), config_(config) {
  check_range(name + ".blocks", config_.blocks, int64_t{1}, int64_t{64});
  check_range(name + ".history_length", history_length, int64_t{1}, int64_t{100000});
  const int64_t L = Tn_ + 1;
  position_ = params.add(name + ".position", {L, W_}, Init::uniform(-0.05f, 0.05f));
  for (int64_t b = 0; b < config_.blocks; ++b)
    blocks_.push_back(std::make_unique<TransformerBlock<T>>(
        params, fmt::format("{}.block{}", name, b), W_, config_.transformer));
  tokens_.resize(blocks_.size() + 1);
}

template <class T>
BstEncoder<T>::~BstEncoder() = default;

template <class T>
int64_t BstEncoder<T>::output_width() const {
  return config_.readout == BstReadout::Concat ? (Tn_ + 1) * W_ : W_;
}

template <class T>
void BstEncoder<T>::forward(const Context& ctx, int64_t B, const T* target, int64_t ldt,
                            const T* history, const T* gap, int64_t ldh,
                            const int64_t* token_lengths, T* out, int64_t ldo, bool training) {
  B_ = B;
  const int64_t L = Tn_ + 1, W = W_;
  for (auto& t : tokens_) t.resize(ctx, {B * L, W});
  T* z = tokens_[0].data();
  kernels::copy_2d<T>(ctx, B, W, target, ldt, z, L * W);
  for (int64_t t = 0; t < Tn_; ++t) {
    kernels::copy_2d<T>(ctx, B, W, history + t * ldh, Tn_ * ldh, z + (1 + t) * W, L * W);
    if (gap)
      kernels::copy_2d<T>(ctx, B, W, gap + t * ldh, Tn_ * ldh, z + (1 + t) * W, L * W,
                          /*accumulate=*/true);
  }
  kernels::bias_add<T>(ctx, B, L * W, params_->value(position_), z);
  tok_lengths_ = token_lengths;
  for (size_t k = 0; k < blocks_.size(); ++k)
    blocks_[k]->forward(ctx, B, L, tok_lengths_, tokens_[k].data(), tokens_[k + 1].data(),
                        training);
  const T* y = tokens_.back().data();
  switch (config_.readout) {
    case BstReadout::Target: kernels::copy_2d<T>(ctx, B, W, y, L * W, out, ldo); break;
    case BstReadout::Mean:
      // Weights 1 / n over the n valid tokens and 0 on padding, computed on the device: the
      // masked softmax of a row of zeros (exp(0) = 1 over the valid entries, then / n).
      mean_weights_.resize(ctx, {B, L});
      zero_bytes(ctx, mean_weights_.data(), mean_weights_.bytes());
      kernels::masked_softmax_forward<T>(ctx, B, L, 1, tok_lengths_, mean_weights_.data(),
                                         mean_weights_.data());
      kernels::weighted_sum_forward<T>(ctx, B, L, W, tok_lengths_, mean_weights_.data(), y,
                                       W, out, ldo);
      break;
    case BstReadout::Concat:
      masked_.resize(ctx, {B * L, W});
      copy_bytes(ctx, masked_.data(), ctx.device(), y, ctx.device(), masked_.bytes());
      kernels::mask_positions<T>(ctx, B, L, W, tok_lengths_, masked_.data(), W);
      kernels::copy_2d<T>(ctx, B, L * W, masked_.data(), L * W, out, ldo);
      break;
  }
}

template <class T>
void BstEncoder<T>::backward(const Context& ctx, const T* dout, int64_t lddo, T* dtarget,
                             int64_t lddt, T* dhistory, T* dgap, int64_t lddh) {
  const int64_t B = B_, L = Tn_ + 1, W = W_;
  dtok_a_.resize(ctx, {B * L, W});
  dtok_b_.resize(ctx, {B * L, W});
  zero_bytes(ctx, dtok_a_.data(), dtok_a_.bytes());
  switch (config_.readout) {
    case BstReadout::Target: kernels::copy_2d<T>(ctx, B, W, dout, lddo, dtok_a_.data(), L * W); break;
    case BstReadout::Mean:
      dweights_.resize(ctx, {B, L});
      kernels::weighted_sum_backward<T>(ctx, B, L, W, tok_lengths_, mean_weights_.data(),
                                        tokens_.back().data(), W, dout, lddo, dweights_.data(),
                                        dtok_a_.data(), W);
      break;
    case BstReadout::Concat:
      kernels::copy_2d<T>(ctx, B, L * W, dout, lddo, dtok_a_.data(), L * W);
      kernels::mask_positions<T>(ctx, B, L, W, tok_lengths_, dtok_a_.data(), W);
      break;
  }
  T* g = dtok_a_.data();
  T* other = dtok_b_.data();
  for (size_t k = blocks_.size(); k-- > 0;) {
    blocks_[k]->backward(ctx, g, other);
    std::swap(g, other);
  }
  // g = d(tokens before the blocks).
  kernels::bias_grad<T>(ctx, B, L * W, g, params_->grad(position_));
  params_->grad_written(ctx, position_);
  for (int64_t t = 0; t < Tn_; ++t) {
    kernels::copy_2d<T>(ctx, B, W, g + (1 + t) * W, L * W, dhistory + t * lddh, Tn_ * lddh,
                        /*accumulate=*/true);
    if (dgap)
      kernels::copy_2d<T>(ctx, B, W, g + (1 + t) * W, L * W, dgap + t * lddh, Tn_ * lddh,
                          /*accumulate=*/true);
  }
  kernels::copy_2d<T>(ctx, B, W, g, L * W, dtarget, lddt, /*accumulate=*/true);
}

template class BstEncoder<float>;
template class BstEncoder<double>;

}  // namespace lockstep::nn

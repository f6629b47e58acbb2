#include "lockstep/nn/transformer.h"

#include <cmath>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/dropout.h"

namespace lockstep::nn {

void TransformerConfig::validate(std::string_view prefix, int64_t d_model) const {
  check_range(fmt::format("{}.heads", prefix), heads, int64_t{1}, int64_t{1024});
  LOCKSTEP_CHECK_KEY(d_model % heads == 0, fmt::format("{}.heads", prefix),
                     "{}.heads = {} does not divide the model width {}: pick a divisor", prefix,
                     heads, d_model);
  check_range(fmt::format("{}.ffn_width", prefix), ffn_width, int64_t{1}, int64_t{1} << 20);
  check_range(fmt::format("{}.leaky_slope", prefix), leaky_slope, 0.0, 1.0);
  check_range(fmt::format("{}.dropout", prefix), dropout, 0.0, 0.95);
  check_range(fmt::format("{}.layer_norm_eps", prefix), layer_norm_eps, 1e-12, 1.0);
}

template <class T>
TransformerBlock<T>::TransformerBlock(ParamSet<T>& params, const std::string& name, int64_t d_model,
                                      TransformerConfig config)
    : d_(d_model), heads_(config.heads), dh_(0), config_(config) {
  check_range(name + ".d_model", d_model, int64_t{1}, int64_t{1} << 16);
  config_.validate(name, d_model);
  dh_ = d_ / heads_;
  in_ = std::make_unique<Linear<T>>(params, name + ".attn.in", d_, 3 * d_);
  out_ = std::make_unique<Linear<T>>(params, name + ".attn.out", d_, d_);
  ln1_ = std::make_unique<LayerNorm<T>>(params, name + ".ln1", d_, config_.layer_norm_eps);
  ActivationConfig leaky{ActivationKind::LeakyReLU};
  leaky.leaky_slope = config_.leaky_slope;
  ffn_ = std::make_unique<Mlp<T>>(params, name + ".ffn", d_,
                                  MlpConfig{{config_.ffn_width, d_}, leaky, false});
  ln2_ = std::make_unique<LayerNorm<T>>(params, name + ".ln2", d_, config_.layer_norm_eps);
}

template <class T>
TransformerBlock<T>::~TransformerBlock() = default;

template <class T>
void TransformerBlock<T>::forward(const Context& ctx, int64_t B, int64_t L, const int64_t* lengths,
                                  const T* x, T* y, bool training) {
  B_ = B, L_ = L, lengths_ = lengths, x_ = x;
  const int64_t rows = B * L, d = d_, h = heads_, dh = dh_;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  qkv_.resize(ctx, {rows, 3 * d});
  probs_.resize(ctx, {B * h * L, L});
  heads_out_.resize(ctx, {rows, d});
  attn_.resize(ctx, {rows, d});
  r1_.resize(ctx, {rows, d});
  z_.resize(ctx, {rows, d});
  r2_.resize(ctx, {rows, d});
  if (rows == 0) return;
  in_->forward(ctx, rows, x, qkv_.data());
  // Per sample and head: P = masked softmax(Q Kᵀ / sqrt(dh)) over the valid keys, O = P V,
  // written into the head's columns of the concatenated output (kernels/attention.h).
  kernels::attention_forward<T>(ctx, B, L, h, dh, scale, lengths, qkv_.data(), probs_.data(),
                                heads_out_.data());
  out_->forward(ctx, rows, heads_out_.data(), attn_.data());
  dropout_on_ = training && config_.dropout > 0.0f;
  seed_ = ctx.random_seed();
  if (dropout_on_) {
    drop1_ = ctx.reserve_random_counters(static_cast<uint64_t>(rows * d));
    kernels::dropout_forward<T>(ctx, rows * d, config_.dropout, seed_, drop1_.base, drop1_.offset,
                                attn_.data(), attn_.data());
  }
  copy_bytes(ctx, r1_.data(), ctx.device(), x, ctx.device(), rows * d * sizeof(T));
  kernels::copy_2d<T>(ctx, rows, d, attn_.data(), d, r1_.data(), d, /*accumulate=*/true);
  ln1_->forward(ctx, rows, r1_.data(), z_.data());
  const T* f = ffn_->forward(ctx, rows, z_.data(), training);
  if (dropout_on_) {
    drop2_ = ctx.reserve_random_counters(static_cast<uint64_t>(rows * d));
    kernels::dropout_forward<T>(ctx, rows * d, config_.dropout, seed_, drop2_.base, drop2_.offset,
                                f, r2_.data());
  } else {
    copy_bytes(ctx, r2_.data(), ctx.device(), f, ctx.device(), rows * d * sizeof(T));
  }
  kernels::copy_2d<T>(ctx, rows, d, z_.data(), d, r2_.data(), d, /*accumulate=*/true);
  ln2_->forward(ctx, rows, r2_.data(), y);
}

template <class T>
void TransformerBlock<T>::backward(const Context& ctx, const T* dy, T* dx) {
  const int64_t B = B_, L = L_, rows = B * L, d = d_, h = heads_, dh = dh_;
  if (rows == 0) return;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  g_r2_.resize(ctx, {rows, d});
  g_z_.resize(ctx, {rows, d});
  g_r1_.resize(ctx, {rows, d});
  g_attn_.resize(ctx, {rows, d});
  g_heads_.resize(ctx, {rows, d});
  g_scores_.resize(ctx, {B * h * L, L});
  g_qkv_.resize(ctx, {rows, 3 * d});
  const size_t bytes = static_cast<size_t>(rows * d) * sizeof(T);

  // y = LN2(r2), r2 = z + drop(ffn(z)).
  ln2_->backward(ctx, rows, r2_.data(), dy, g_r2_.data());
  if (dropout_on_)
    kernels::dropout_backward<T>(ctx, rows * d, config_.dropout, seed_, drop2_.base, drop2_.offset,
                                 g_r2_.data(), g_attn_.data());
  else
    copy_bytes(ctx, g_attn_.data(), ctx.device(), g_r2_.data(), ctx.device(), bytes);
  ffn_->backward(ctx, rows, z_.data(), g_attn_.data(), g_z_.data());
  kernels::copy_2d<T>(ctx, rows, d, g_r2_.data(), d, g_z_.data(), d, /*accumulate=*/true);
  // z = LN1(r1), r1 = x + drop(attn(x)).
  ln1_->backward(ctx, rows, r1_.data(), g_z_.data(), g_r1_.data());
  copy_bytes(ctx, dx, ctx.device(), g_r1_.data(), ctx.device(), bytes);  // the residual path
  if (dropout_on_)
    kernels::dropout_backward<T>(ctx, rows * d, config_.dropout, seed_, drop1_.base, drop1_.offset,
                                 g_r1_.data(), g_attn_.data());
  else
    copy_bytes(ctx, g_attn_.data(), ctx.device(), g_r1_.data(), ctx.device(), bytes);
  out_->backward(ctx, rows, heads_out_.data(), g_attn_.data(), g_heads_.data());
  kernels::attention_backward<T>(ctx, B, L, h, dh, scale, lengths_, qkv_.data(), probs_.data(),
                                 g_heads_.data(), g_scores_.data(), g_qkv_.data());
  in_->backward(ctx, rows, x_, g_qkv_.data(), dx, /*accumulate_dx=*/true);
}

template class TransformerBlock<float>;
template class TransformerBlock<double>;

}  // namespace lockstep::nn

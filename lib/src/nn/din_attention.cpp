#include "lockstep/nn/din_attention.h"

#include <cmath>

#include "kernels/din_unit.h"
#include "kernels/softmax.h"
#include "kernels/weighted_sum.h"

namespace lockstep::nn {

void DinAttentionConfig::validate(std::string_view prefix) const {
  LOCKSTEP_CHECK_KEY(!hidden.empty(), fmt::format("{}.hidden", prefix),
                     "{}.hidden is empty: the activation unit needs at least one hidden layer, "
                     "e.g. [80, 40]",
                     prefix);
  for (size_t i = 0; i < hidden.size(); ++i)
    check_range(fmt::format("{}.hidden[{}]", prefix, i), hidden[i], int64_t{1}, int64_t{1} << 16);
  activation.validate(fmt::format("{}.activation", prefix));
}

template <class T>
DinAttention<T>::DinAttention(ParamSet<T>& params, const std::string& name, int64_t dim,
                              DinAttentionConfig config)
    : params_(&params), dim_(dim), config_(std::move(config)) {
  config_.validate(name);
  check_range(name + ".dim", dim, int64_t{1}, int64_t{1} << 16);
  const int64_t h1 = config_.hidden[0];
  w1_ = params.add(name + ".unit.input.weight", {4 * dim, h1}, Init::xavier_uniform(4 * dim, h1));
  b1_ = params.add(name + ".unit.input.bias", {h1}, Init::zeros());
  if (config_.activation.kind != ActivationKind::None)
    act1_ = std::make_unique<Activation<T>>(params, name + ".unit.input.act", h1, config_.activation);
  MlpConfig rest{std::vector<int64_t>(config_.hidden.begin() + 1, config_.hidden.end()),
                 config_.activation, false};
  rest.widths.push_back(1);
  rest_ = std::make_unique<Mlp<T>>(params, name + ".unit", h1, rest);
}

template <class T>
DinAttention<T>::~DinAttention() = default;

template <class T>
void DinAttention<T>::forward(const Context& ctx, int64_t B, int64_t Tn, const T* q, int64_t ldq,
                              const T* k, int64_t ldk, const int64_t* lengths, T* out, int64_t ldo,
                              bool training) {
  B_ = B, T_ = Tn, q_ = q, k_ = k, ldq_ = ldq, ldk_ = ldk, lengths_ = lengths;
  const int64_t rows = B * Tn, h1 = config_.hidden[0];
  h1_.resize(ctx, {rows, h1});
  weights_.resize(ctx, {B, Tn});
  const T* a1 = h1_.data();
  if (prelu_fused()) {  // the unit and its PReLU in one pass (kernels/din_unit.h)
    a1_.resize(ctx, {rows, h1});
    kernels::din_unit_prelu_forward<T>(ctx, B, Tn, dim_, h1, q, ldq, k, ldk, params_->value(w1_),
                                       params_->value(b1_), params_->value(act1_->alpha()),
                                       h1_.data(), a1_.data());
    a1 = a1_.data();
  } else {
    kernels::din_unit_forward<T>(ctx, B, Tn, dim_, h1, q, ldq, k, ldk, params_->value(w1_),
                                 params_->value(b1_), h1_.data());
    if (act1_) {
      a1_.resize(ctx, {rows, h1});
      act1_->forward(ctx, rows, h1_.data(), a1_.data(), training);
      a1 = a1_.data();
    }
  }
  const T* scores = rest_->forward(ctx, rows, a1, training);  // (B*T, 1)
  if (config_.softmax) {
    kernels::masked_softmax_forward<T>(ctx, B, Tn, 1, lengths, scores, weights_.data());
  } else if (rows > 0) {
    copy_bytes(ctx, weights_.data(), ctx.device(), scores, ctx.device(), rows * sizeof(T));
  }
  kernels::weighted_sum_forward<T>(ctx, B, Tn, dim_, lengths, weights_.data(), k, ldk, out, ldo);
}

template <class T>
void DinAttention<T>::backward(const Context& ctx, const T* dout, int64_t lddo, T* dq,
                               int64_t lddq, T* dk, int64_t lddk) {
  const int64_t rows = B_ * T_, h1 = config_.hidden[0];
  dweights_.resize(ctx, {B_, T_});
  // dk += w·dout at valid positions; dw = dout·k (0 at padding).
  kernels::weighted_sum_backward<T>(ctx, B_, T_, dim_, lengths_, weights_.data(), k_, ldk_, dout,
                                    lddo, dweights_.data(), dk, lddk);
  if (config_.softmax)
    kernels::masked_softmax_backward<T>(ctx, B_, T_, weights_.data(), dweights_.data(),
                                        dweights_.data());
  da1_.resize(ctx, {rows, h1});
  const T* a1 = act1_ ? a1_.data() : h1_.data();
  rest_->backward(ctx, rows, a1, dweights_.data(), da1_.data());
  if (prelu_fused()) {
    const auto alpha = act1_->alpha();
    kernels::din_unit_prelu_backward<T>(ctx, B_, T_, dim_, h1, q_, ldq_, k_, ldk_,
                                        params_->value(w1_), h1_.data(), params_->value(alpha),
                                        da1_.data(), params_->grad(w1_), params_->grad(b1_),
                                        params_->grad(alpha), dq, lddq, dk, lddk);
    params_->grad_written(ctx, alpha);
  } else {
    if (act1_) act1_->backward(ctx, rows, h1_.data(), a1_.data(), da1_.data(), da1_.data());
    kernels::din_unit_backward<T>(ctx, B_, T_, dim_, h1, q_, ldq_, k_, ldk_, params_->value(w1_),
                                  da1_.data(), params_->grad(w1_), params_->grad(b1_), dq, lddq, dk,
                                  lddk);
  }
  params_->grad_written(ctx, w1_);
  params_->grad_written(ctx, b1_);
}

template class DinAttention<float>;
template class DinAttention<double>;

}  // namespace lockstep::nn

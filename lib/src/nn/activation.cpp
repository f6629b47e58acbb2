#include "lockstep/nn/activation.h"

#include "kernels/activation.h"

namespace lockstep::nn {

namespace {
constexpr ActivationKind kKinds[] = {ActivationKind::None,    ActivationKind::ReLU,
                                     ActivationKind::PReLU,   ActivationKind::LeakyReLU,
                                     ActivationKind::Sigmoid, ActivationKind::Dice};
}

const char* activation_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::None:
      return "none";
    case ActivationKind::ReLU:
      return "relu";
    case ActivationKind::PReLU:
      return "prelu";
    case ActivationKind::LeakyReLU:
      return "leaky_relu";
    case ActivationKind::Sigmoid:
      return "sigmoid";
    case ActivationKind::Dice:
      return "dice";
  }
  return "?";
}

ActivationKind parse_activation(std::string_view name, std::string_view field) {
  for (auto k : kKinds)
    if (name == activation_name(k)) return k;
  throw Error(
      fmt::format("{} = '{}' is not an activation: use one of none, relu, prelu, "
                  "leaky_relu, sigmoid, dice",
                  field, name));
}

void ActivationConfig::validate(std::string_view prefix) const {
  check_range(fmt::format("{}.leaky_slope", prefix), leaky_slope, 0.0, 1.0);
  check_range(fmt::format("{}.prelu_init", prefix), prelu_init, -1.0, 1.0);
  check_range(fmt::format("{}.dice_eps", prefix), dice_eps, 1e-12, 1.0);
  check_range(fmt::format("{}.dice_momentum", prefix), dice_momentum, 0.0, 1.0);
}

template <class T>
Activation<T>::Activation(ParamSet<T>& params, const std::string& name, int64_t width,
                          ActivationConfig config)
    : params_(&params), config_(config), width_(width) {
  config.validate(name);
  if (config.kind == ActivationKind::PReLU || config.kind == ActivationKind::Dice)
    alpha_ = params.add(name + ".alpha", {width}, Init::constant(config.prelu_init));
  if (config.kind == ActivationKind::Dice) {
    running_mean_ = params.add(name + ".running_mean", {width}, Init::zeros(), false);
    running_var_ = params.add(name + ".running_var", {width}, Init::constant(1.0f), false);
  }
}

template <class T>
void Activation<T>::forward(const Context& ctx, int64_t rows, const T* x, T* y, bool training) {
  const int64_t n = rows * width_;
  switch (config_.kind) {
    case ActivationKind::None:
      if (n > 0) copy_bytes(ctx, y, ctx.device(), x, ctx.device(), n * sizeof(T));
      break;
    case ActivationKind::ReLU:
      kernels::relu_forward<T>(ctx, n, x, y);
      break;
    case ActivationKind::LeakyReLU:
      kernels::leaky_relu_forward<T>(ctx, n, T(config_.leaky_slope), x, y);
      break;
    case ActivationKind::Sigmoid:
      kernels::sigmoid_forward<T>(ctx, n, x, y);
      break;
    case ActivationKind::PReLU:
      kernels::prelu_forward<T>(ctx, rows, width_, x, params_->value(alpha_), y);
      break;
    case ActivationKind::Dice:
      if (!training) {
        kernels::dice_forward_infer<T>(ctx, rows, width_, T(config_.dice_eps), x,
                                       params_->value(alpha_), params_->value(running_mean_),
                                       params_->value(running_var_), y);
        break;
      }
      batch_mean_.resize(ctx, {width_});
      batch_var_.resize(ctx, {width_});
      gate_.resize(ctx, {rows, width_});
      saved_rows_ = rows;
      if (rows == 0) break;  // an empty batch has no statistics; running averages stay
      kernels::dice_forward_train<T>(ctx, rows, width_, T(config_.dice_eps), x,
                                     params_->value(alpha_), y, batch_mean_.data(),
                                     batch_var_.data(), gate_.data());
      kernels::dice_update_running<T>(ctx, rows, width_, T(config_.dice_momentum),
                                      batch_mean_.data(), batch_var_.data(),
                                      params_->value(running_mean_), params_->value(running_var_));
      break;
  }
}

template <class T>
void Activation<T>::backward(const Context& ctx, int64_t rows, const T* x, const T* y, const T* dy,
                             T* dx) {
  const int64_t n = rows * width_;
  switch (config_.kind) {
    case ActivationKind::None:
      if (n > 0 && dx != dy) copy_bytes(ctx, dx, ctx.device(), dy, ctx.device(), n * sizeof(T));
      break;
    case ActivationKind::ReLU:
      kernels::relu_backward<T>(ctx, n, x, dy, dx);
      break;
    case ActivationKind::LeakyReLU:
      kernels::leaky_relu_backward<T>(ctx, n, T(config_.leaky_slope), x, dy, dx);
      break;
    case ActivationKind::Sigmoid:
      kernels::sigmoid_backward<T>(ctx, n, y, dy, dx);
      break;
    case ActivationKind::PReLU:
      kernels::prelu_backward<T>(ctx, rows, width_, x, params_->value(alpha_), dy, dx,
                                 params_->grad(alpha_));
      params_->grad_written(ctx, alpha_);
      break;
    case ActivationKind::Dice:
      LOCKSTEP_CHECK(saved_rows_ == rows,
                     "Dice backward over {} rows needs a training-mode forward over the same "
                     "rows (last one: {})",
                     rows, saved_rows_);
      if (rows == 0) break;
      kernels::dice_backward<T>(ctx, rows, width_, T(config_.dice_eps), x, params_->value(alpha_),
                                batch_mean_.data(), batch_var_.data(), gate_.data(), dy, dx,
                                params_->grad(alpha_));
      params_->grad_written(ctx, alpha_);
      break;
  }
}

template class Activation<float>;
template class Activation<double>;

}  // namespace lockstep::nn

#include "lockstep/nn/optimizer.h"

#include "kernels/init.h"
#include "kernels/optimizer.h"

namespace lockstep::nn {

const char* optimizer_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::Sgd:
      return "sgd";
    case OptimizerKind::Adam:
      return "adam";
    case OptimizerKind::Adagrad:
      return "adagrad";
  }
  return "?";
}

OptimizerKind parse_optimizer(std::string_view name, std::string_view field) {
  for (auto k : {OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::Adagrad})
    if (name == optimizer_name(k)) return k;
  throw Error(
      fmt::format("{} = '{}' is not an optimizer: use one of sgd, adam, adagrad", field, name));
}

void OptimizerConfig::validate(std::string_view prefix) const {
  check_range(fmt::format("{}.lr", prefix), lr, 1e-12, 100.0);
  check_range(fmt::format("{}.momentum", prefix), momentum, 0.0, 0.999999);
  check_range(fmt::format("{}.beta1", prefix), beta1, 0.0, 0.999999);
  check_range(fmt::format("{}.beta2", prefix), beta2, 0.0, 0.999999999);
  check_range(fmt::format("{}.eps", prefix), eps, 1e-30, 1.0);
  check_range(fmt::format("{}.weight_decay", prefix), weight_decay, 0.0, 1.0);
  check_range(fmt::format("{}.initial_accumulator", prefix), initial_accumulator, 0.0, 1e6);
  LOCKSTEP_CHECK_KEY(!nesterov || momentum > 0.0f, fmt::format("{}.nesterov", prefix),
                     "{}.nesterov = true needs {}.momentum > 0", prefix, prefix);
}

template <class T>
DenseOptimizer<T>::DenseOptimizer(OptimizerConfig config, const Context& ctx, int64_t n)
    : config_(config), n_(n) {
  config_.validate("optimizer");
  const auto zeroed = [&](Tensor<T>& t, T value) {
    t.resize(ctx, {std::max<int64_t>(n, 1)});
    kernels::fill_constant<T>(ctx, t.numel(), value, t.data());
  };
  switch (config_.kind) {
    case OptimizerKind::Sgd:
      if (config_.momentum > 0.0f) zeroed(s0_, T(0));
      break;
    case OptimizerKind::Adam:
      zeroed(s0_, T(0));
      zeroed(s1_, T(0));
      break;
    case OptimizerKind::Adagrad:
      zeroed(s0_, T(config_.initial_accumulator));
      break;
  }
}

template <class T>
void DenseOptimizer<T>::step(const Context& ctx, T* params, const T* grads, T grad_scale) {
  step(ctx, params, grads, grad_scale, 0, n_);
}

template <class T>
void DenseOptimizer<T>::step(const Context& ctx, T* params, const T* grads, T grad_scale,
                             int64_t begin, int64_t end) {
  LOCKSTEP_ASSERT(0 <= begin && begin <= end && end <= n_);
  ++step_;
  const auto& c = config_;
  const int64_t n = end - begin;
  T* p = params + begin;
  const T* g = grads + begin;
  switch (c.kind) {
    case OptimizerKind::Sgd:
      kernels::sgd_update<T>(ctx, {c.lr, c.momentum, c.weight_decay, c.nesterov}, grad_scale, n, p,
                             g, c.momentum > 0.0f ? s0_.data() + begin : nullptr);
      break;
    case OptimizerKind::Adam:
      kernels::adam_update<T>(ctx, {c.lr, c.beta1, c.beta2, c.eps, c.weight_decay}, step_,
                              grad_scale, n, p, g, s0_.data() + begin, s1_.data() + begin);
      break;
    case OptimizerKind::Adagrad:
      kernels::adagrad_update<T>(ctx, {c.lr, c.eps}, grad_scale, n, p, g, s0_.data() + begin);
      break;
  }
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> DenseOptimizer<T>::state() {
  switch (config_.kind) {
    case OptimizerKind::Sgd:
      if (config_.momentum > 0.0f) return {{"velocity", &s0_}};
      return {};
    case OptimizerKind::Adam:
      return {{"m", &s0_}, {"v", &s1_}};
    case OptimizerKind::Adagrad:
      return {{"accum", &s0_}};
  }
  return {};
}

template class DenseOptimizer<float>;
template class DenseOptimizer<double>;

}  // namespace lockstep::nn

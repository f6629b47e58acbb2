#include "lockstep/nn/mlp.h"

#include <algorithm>

#include "kernels/copy.h"

namespace lockstep::nn {

void MlpConfig::validate(std::string_view prefix) const {
  LOCKSTEP_CHECK_KEY(!widths.empty(), fmt::format("{}.widths", prefix),
                     "{}.widths is empty: give at least one layer width, e.g. [80, 1]", prefix);
  for (size_t i = 0; i < widths.size(); ++i)
    check_range(fmt::format("{}.widths[{}]", prefix, i), widths[i], int64_t{1}, int64_t{1} << 20);
  activation.validate(fmt::format("{}.activation", prefix));
}

template <class T>
struct Mlp<T>::Layer {
  Linear<T> linear;
  std::unique_ptr<Activation<T>> act;  // null: no activation after this layer
  Tensor<T> pre, post;                 // pre-activation and output; post unused without act
  const T* output() const { return act ? post.data() : pre.data(); }
};

template <class T>
Mlp<T>::Mlp(ParamSet<T>& params, const std::string& name, int64_t in_features, MlpConfig config)
    : in_(in_features), config_(std::move(config)) {
  config_.validate(name);
  int64_t width = in_features;
  for (size_t i = 0; i < config_.widths.size(); ++i) {
    const std::string layer_name = fmt::format("{}.{}", name, i);
    auto layer = std::make_unique<Layer>(
        Layer{Linear<T>(params, layer_name, width, config_.widths[i]), nullptr, {}, {}});
    const bool last = i + 1 == config_.widths.size();
    if ((!last || config_.activate_last) && config_.activation.kind != ActivationKind::None)
      layer->act = std::make_unique<Activation<T>>(params, layer_name + ".act", config_.widths[i],
                                                   config_.activation);
    layers_.push_back(std::move(layer));
    width = config_.widths[i];
  }
}

template <class T>
Mlp<T>::~Mlp() = default;
template <class T>
Mlp<T>::Mlp(Mlp&&) noexcept = default;

template <class T>
const T* Mlp<T>::forward(const Context& ctx, int64_t rows, const T* x, bool training) {
  const T* in = x;
  for (auto& l : layers_) {
    const int64_t w = l->linear.out_features();
    l->pre.resize(ctx, {rows, w});
    l->linear.forward(ctx, rows, in, l->pre.data());
    if (l->act) {
      l->post.resize(ctx, {rows, w});
      l->act->forward(ctx, rows, l->pre.data(), l->post.data(), training);
    }
    in = l->output();
  }
  return in;
}

template <class T>
void Mlp<T>::backward(const Context& ctx, int64_t rows, const T* x, const T* dout, T* dx,
                      const T* d_last_hidden) {
  LOCKSTEP_CHECK(d_last_hidden == nullptr || layers_.size() >= 2,
                 "a hint gradient needs an MLP with a hidden layer");
  int64_t max_width = in_;
  for (const auto& l : layers_) max_width = std::max(max_width, l->linear.out_features());
  grad_a_.resize(ctx, {rows * max_width});
  grad_b_.resize(ctx, {rows * max_width});
  // g holds dL/d(output of layer i); it ping-pongs between the two scratch buffers.
  const T* g = dout;
  T* scratch[2] = {grad_a_.data(), grad_b_.data()};
  int which = 0;
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& l = *layers_[i];
    if (l.act) {
      T* dpre = scratch[which];
      which ^= 1;
      l.act->backward(ctx, rows, l.pre.data(), l.post.data(), g, dpre);
      g = dpre;
    }
    const T* in = i == 0 ? x : layers_[i - 1]->output();
    T* din = i == 0 ? dx : scratch[which];
    l.linear.backward(ctx, rows, in, g, din);
    if (i > 0) {
      g = din;
      which ^= 1;
      if (d_last_hidden && i == layers_.size() - 1)  // g = d(last hidden): add the hint's part
        kernels::copy_2d<T>(ctx, rows, layers_[i - 1]->linear.out_features(), d_last_hidden,
                            layers_[i - 1]->linear.out_features(), din,
                            layers_[i - 1]->linear.out_features(), /*accumulate=*/true);
    }
  }
}

template <class T>
int64_t Mlp<T>::last_hidden_width() const {
  return layers_.size() < 2 ? 0 : layers_[layers_.size() - 2]->linear.out_features();
}

template <class T>
const T* Mlp<T>::last_hidden() const {
  return layers_.size() < 2 ? nullptr : layers_[layers_.size() - 2]->output();
}

template class Mlp<float>;
template class Mlp<double>;

}  // namespace lockstep::nn

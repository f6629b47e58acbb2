#include "lockstep/nn/cross_network.h"

#include <cmath>

#include "kernels/copy.h"
#include "kernels/interaction.h"

namespace lockstep::nn {

template <class T>
CrossNetwork<T>::CrossNetwork(ParamSet<T>& params, const std::string& name, int64_t features,
                              int64_t layers)
    : params_(&params), n_(features) {
  check_range(name + ".layers", layers, int64_t{1}, int64_t{64});
  for (int64_t l = 0; l < layers; ++l) {
    const float s = 1.0f / std::sqrt(static_cast<float>(n_));
    weights_.push_back(
        params.add(fmt::format("{}.{}.weight", name, l), {n_}, Init::uniform(-s, s)));
    biases_.push_back(params.add(fmt::format("{}.{}.bias", name, l), {n_}, Init::zeros()));
  }
  x_.resize(layers);
  s_.resize(layers);
}

template <class T>
void CrossNetwork<T>::forward(const Context& ctx, int64_t B, const T* x0, T* out, int64_t ldo) {
  B_ = B;
  x0_ = x0;
  const T* xl = x0;
  for (size_t l = 0; l < x_.size(); ++l) {
    x_[l].resize(ctx, {B, n_});
    s_[l].resize(ctx, {std::max<int64_t>(B, 1)});
    kernels::cross_forward<T>(ctx, B, n_, x0, xl, params_->value(weights_[l]),
                              params_->value(biases_[l]), x_[l].data(), s_[l].data());
    xl = x_[l].data();
  }
  kernels::copy_2d<T>(ctx, B, n_, xl, n_, out, ldo);
}

template <class T>
void CrossNetwork<T>::backward(const Context& ctx, const T* dout, int64_t lddo, T* dx0) {
  const int64_t B = B_, n = static_cast<int64_t>(x_.size());
  g_.resize(ctx, {B, n_});
  g_prev_.resize(ctx, {B, n_});
  kernels::copy_2d<T>(ctx, B, n_, dout, lddo, g_.data(), n_);
  for (int64_t l = n - 1; l >= 0; --l) {
    const T* xl = l == 0 ? x0_ : x_[l - 1].data();
    kernels::cross_backward<T>(ctx, B, n_, x0_, xl, params_->value(weights_[l]), s_[l].data(),
                               g_.data(), dx0, g_prev_.data(), params_->grad(weights_[l]),
                               params_->grad(biases_[l]));
    params_->grad_written(ctx, weights_[l]);
    params_->grad_written(ctx, biases_[l]);
    std::swap(g_, g_prev_);
  }
  // x_0 feeds the first layer's x_l path too: add the gradient that reached it.
  kernels::copy_2d<T>(ctx, B, n_, g_.data(), n_, dx0, n_, /*accumulate=*/true);
}

template class CrossNetwork<float>;
template class CrossNetwork<double>;

}  // namespace lockstep::nn

#include "lockstep/nn/layer_norm.h"

#include "kernels/layer_norm.h"

namespace lockstep::nn {

template <class T>
LayerNorm<T>::LayerNorm(ParamSet<T>& params, const std::string& name, int64_t n, float eps)
    : params_(&params), n_(n), eps_(eps) {
  check_range(name + ".width", n, int64_t{1}, int64_t{1} << 20);
  check_range(name + ".eps", static_cast<double>(eps), 1e-12, 1.0);
  gamma_ = params.add(name + ".gamma", {n}, Init::constant(1.0f));
  beta_ = params.add(name + ".beta", {n}, Init::zeros());
}

template <class T>
void LayerNorm<T>::forward(const Context& ctx, int64_t rows, const T* x, T* y) {
  mean_.resize(ctx, {std::max<int64_t>(rows, 1)});
  rstd_.resize(ctx, {std::max<int64_t>(rows, 1)});
  kernels::layer_norm_forward<T>(ctx, rows, n_, T(eps_), x, params_->value(gamma_),
                                 params_->value(beta_), y, mean_.data(), rstd_.data());
}

template <class T>
void LayerNorm<T>::backward(const Context& ctx, int64_t rows, const T* x, const T* dy, T* dx) {
  kernels::layer_norm_backward<T>(ctx, rows, n_, x, params_->value(gamma_), mean_.data(),
                                  rstd_.data(), dy, dx, params_->grad(gamma_),
                                  params_->grad(beta_));
  params_->grad_written(ctx, gamma_);
  params_->grad_written(ctx, beta_);
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace lockstep::nn

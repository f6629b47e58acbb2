#include "lockstep/nn/linear.h"

#include "kernels/bias.h"
#include "kernels/gemm.h"

namespace lockstep::nn {

using kernels::Trans;

template <class T>
Linear<T>::Linear(ParamSet<T>& params, const std::string& name, int64_t in_features,
                  int64_t out_features, bool bias)
    : params_(&params), in_(in_features), out_(out_features) {
  check_range(name + ".in_features", in_features, int64_t{1}, int64_t{1} << 24);
  check_range(name + ".out_features", out_features, int64_t{1}, int64_t{1} << 24);
  weight_ = params.add(name + ".weight", {in_, out_}, Init::xavier_uniform(in_, out_));
  if (bias) bias_ = params.add(name + ".bias", {out_}, Init::zeros());
}

template <class T>
void Linear<T>::forward(const Context& ctx, int64_t rows, const T* x, T* y) const {
  if (rows == 0) return;
  kernels::gemm<T>(ctx, Trans::N, Trans::N, rows, out_, in_, T(1), x, in_, params_->value(weight_),
                   out_, T(0), y, out_);
  if (bias_ >= 0) kernels::bias_add<T>(ctx, rows, out_, params_->value(bias_), y);
}

template <class T>
void Linear<T>::backward(const Context& ctx, int64_t rows, const T* x, const T* dy, T* dx,
                         bool accumulate_dx) const {
  if (rows == 0) return;
  // dW (in, out) += xᵀ (in, rows) · dy (rows, out)
  kernels::gemm<T>(ctx, Trans::T, Trans::N, in_, out_, rows, T(1), x, in_, dy, out_, T(1),
                   params_->grad(weight_), out_);
  params_->grad_written(ctx, weight_);
  if (bias_ >= 0) {
    kernels::bias_grad<T>(ctx, rows, out_, dy, params_->grad(bias_));
    params_->grad_written(ctx, bias_);
  }
  // dx (rows, in) = dy (rows, out) · Wᵀ (out, in)
  if (dx)
    kernels::gemm<T>(ctx, Trans::N, Trans::T, rows, in_, out_, T(1), dy, out_,
                     params_->value(weight_), out_, accumulate_dx ? T(1) : T(0), dx, in_);
}

template class Linear<float>;
template class Linear<double>;

}  // namespace lockstep::nn

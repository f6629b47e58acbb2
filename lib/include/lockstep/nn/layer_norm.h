#pragma once
// Layer normalisation over the last dimension.

#include <string>

#include "lockstep/nn/param_set.h"

namespace lockstep::nn {

/// y = (x − mean) / sqrt(var + eps) · gamma + beta per row of (rows, n). Parameters
/// "<name>.gamma" (ones) and "<name>.beta" (zeros). Keeps the statistics of its last forward.
template <class T>
class LayerNorm {
 public:
  LayerNorm(ParamSet<T>& params, const std::string& name, int64_t n, float eps = 1e-5f);
  void forward(const Context& ctx, int64_t rows, const T* x, T* y);
  /// Uses the last forward's x (passed again) and statistics; dx overwrites (may alias dy);
  /// gamma and beta gradients accumulate.
  void backward(const Context& ctx, int64_t rows, const T* x, const T* dy, T* dx);

 private:
  ParamSet<T>* params_;
  int64_t n_;
  float eps_;
  typename ParamSet<T>::Handle gamma_, beta_;
  Tensor<T> mean_, rstd_;
};

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace lockstep::nn

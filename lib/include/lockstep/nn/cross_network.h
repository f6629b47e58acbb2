#pragma once
// DCN cross network (Wang et al., "Deep & Cross Network for Ad Click Predictions", 2017).

#include <string>
#include <vector>

#include "lockstep/core/tensor.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::nn {

/// `layers` cross layers over n features: x_{l+1} = x_0 · (x_l · w_l) + b_l + x_l per row,
/// starting at x_0. Parameters "<name>.<l>.weight" (n, uniform ±1/√n) and "<name>.<l>.bias"
/// (n, zero) live in the ParamSet.
template <class T>
class CrossNetwork {
 public:
  CrossNetwork(ParamSet<T>& params, const std::string& name, int64_t features, int64_t layers);

  int64_t features() const { return n_; }
  int64_t layers() const { return static_cast<int64_t>(weights_.size()); }
  int64_t output_width() const { return n_; }

  /// x0: (B, n) contiguous, kept until backward(); out: (B, n) row stride ldo (overwritten)
  /// = x_L.
  void forward(const Context& ctx, int64_t B, const T* x0, T* out, int64_t ldo);
  /// dout: (B, n) row stride lddo. ACCUMULATES dx0 (+=, (B, n) contiguous) and the parameters'
  /// gradients.
  void backward(const Context& ctx, const T* dout, int64_t lddo, T* dx0);

 private:
  ParamSet<T>* params_;
  int64_t n_;
  std::vector<typename ParamSet<T>::Handle> weights_, biases_;
  int64_t B_ = 0;
  const T* x0_ = nullptr;
  std::vector<Tensor<T>> x_, s_;  // x_1..x_L (B, n) and s_0..s_{L-1} (B)
  Tensor<T> g_, g_prev_;
};

extern template class CrossNetwork<float>;
extern template class CrossNetwork<double>;

}  // namespace lockstep::nn

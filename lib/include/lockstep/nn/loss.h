#pragma once
// Binary cross-entropy with logits, summed over samples.

#include "lockstep/core/tensor.h"

namespace lockstep::nn {

/// L = Σ_i [max(z_i, 0) − z_i·y_i + log(1 + exp(−|z_i|))]: a SUM over samples (not a mean), so
/// that an empty batch contributes exactly zero and ranks' losses add up.
template <class T>
class BceWithLogits {
 public:
  /// logits, labels: (rows) on ctx's device. Writes dlogits (rows) = grad_scale·(σ(z) − y) unless
  /// nullptr and *loss_sum (one element on ctx's device) = L.
  void forward_backward(const Context& ctx, int64_t rows, const T* logits, const T* labels,
                        T grad_scale, T* dlogits, T* loss_sum);

 private:
  Tensor<T> per_sample_;
};

extern template class BceWithLogits<float>;
extern template class BceWithLogits<double>;

}  // namespace lockstep::nn

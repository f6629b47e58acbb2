#pragma once
// Fully connected layer.

#include <string>

#include "lockstep/nn/param_set.h"

namespace lockstep::nn {

/// y (rows, out) = x (rows, in) · W (in, out) + b (out). W is Xavier-uniform initialised, b zero.
/// Parameters "<name>.weight" (in, out) and "<name>.bias" (out) live in the ParamSet.
template <class T>
class Linear {
 public:
  Linear(ParamSet<T>& params, const std::string& name, int64_t in_features, int64_t out_features,
         bool bias = true);

  /// x: (rows, in), y: (rows, out), both on the ParamSet's device. rows may be 0.
  void forward(const Context& ctx, int64_t rows, const T* x, T* y) const;
  /// Accumulates dW += xᵀ·dy and db += Σ_rows dy; writes dx (rows, in) = dy · Wᵀ (or adds it,
  /// with accumulate_dx) unless dx is nullptr (first layer over inputs that need no gradient).
  void backward(const Context& ctx, int64_t rows, const T* x, const T* dy, T* dx,
                bool accumulate_dx = false) const;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  ParamSet<T>* params_;
  typename ParamSet<T>::Handle weight_, bias_ = -1;
  int64_t in_, out_;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace lockstep::nn

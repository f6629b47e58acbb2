#pragma once
// Activation layer: ReLU, PReLU, LeakyReLU, sigmoid, Dice, or none.

#include <string>
#include <string_view>

#include "lockstep/nn/param_set.h"

namespace lockstep::nn {

enum class ActivationKind { None, ReLU, PReLU, LeakyReLU, Sigmoid, Dice };

/// "none", "relu", "prelu", "leaky_relu", "sigmoid", "dice".
const char* activation_name(ActivationKind kind);
/// Parses a name as above; throws Error naming `field` and the allowed names otherwise.
ActivationKind parse_activation(std::string_view name, std::string_view field);

struct ActivationConfig {
  ActivationKind kind = ActivationKind::ReLU;
  float leaky_slope = 0.01f;    // LeakyReLU
  float prelu_init = 0.25f;     // PReLU and Dice: initial per-channel alpha
  float dice_eps = 1e-8f;       // Dice: variance epsilon
  float dice_momentum = 0.99f;  // Dice: running-average momentum
  /// Throws Error naming `prefix`.<field> and its allowed range for a bad value.
  void validate(std::string_view prefix) const;
};

/// Element-wise activation over (rows, width) activations. PReLU and Dice own a learned
/// per-channel alpha ("<name>.alpha"); Dice also keeps non-trainable running mean/variance
/// ("<name>.running_mean", "<name>.running_var") used in inference.
/// The layer keeps the batch statistics of its last training forward for backward, so one
/// instance serves one forward/backward pair at a time.
template <class T>
class Activation {
 public:
  Activation(ParamSet<T>& params, const std::string& name, int64_t width, ActivationConfig config);

  /// y = f(x); x, y: (rows, width), y must not alias x. training selects batch statistics
  /// (Dice) and updates the running averages.
  void forward(const Context& ctx, int64_t rows, const T* x, T* y, bool training);
  /// dx = dL/dx given dy = dL/dy; accumulates the alpha gradient. x and y are the forward's
  /// input and output; dx may alias dy. Requires a preceding training-mode forward for Dice.
  void backward(const Context& ctx, int64_t rows, const T* x, const T* y, const T* dy, T* dx);

  ActivationKind kind() const { return config_.kind; }
  int64_t width() const { return width_; }
  /// PReLU and Dice: the handle of the learned alpha (for a layer that fuses the activation into
  /// its own kernels, e.g. DinAttention's unit); -1 for the other kinds.
  typename ParamSet<T>::Handle alpha() const { return alpha_; }

 private:
  ParamSet<T>* params_;
  ActivationConfig config_;
  int64_t width_;
  typename ParamSet<T>::Handle alpha_ = -1, running_mean_ = -1, running_var_ = -1;
  Tensor<T> batch_mean_, batch_var_, gate_;  // Dice: saved for backward
  int64_t saved_rows_ = -1;
};

extern template class Activation<float>;
extern template class Activation<double>;

}  // namespace lockstep::nn

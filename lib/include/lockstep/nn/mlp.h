#pragma once
// Multi-layer perceptron: Linear → activation → … → Linear (→ activation if activate_last).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/nn/activation.h"
#include "lockstep/nn/linear.h"

namespace lockstep::nn {

struct MlpConfig {
  std::vector<int64_t> widths;  // output width of each Linear layer, e.g. {200, 80, 1}
  ActivationConfig activation;  // after every layer but the last
  bool activate_last = false;   // also after the last layer (hidden towers)
  /// Throws Error naming `prefix`.<field> for an empty or out-of-range width.
  void validate(std::string_view prefix) const;
};

/// Layers "<name>.<i>" (Linear) and "<name>.<i>.act" (activation). Owns its activations, sized
/// on demand per batch.
template <class T>
class Mlp {
 public:
  Mlp(ParamSet<T>& params, const std::string& name, int64_t in_features, MlpConfig config);
  ~Mlp();
  Mlp(Mlp&&) noexcept;

  /// x: (rows, in). Returns the output (rows, out_features()), valid until the next forward.
  const T* forward(const Context& ctx, int64_t rows, const T* x, bool training);
  /// dout: (rows, out). Accumulates parameter gradients; writes dx (rows, in) unless nullptr.
  /// Uses the activations of the last forward (same x and rows). d_last_hidden (rows, width of
  /// last_hidden()), when given, is an extra gradient with respect to last_hidden() (a hint loss).
  void backward(const Context& ctx, int64_t rows, const T* x, const T* dout, T* dx,
                const T* d_last_hidden = nullptr);
  /// Width of last_hidden() (0 for a single-layer MLP).
  int64_t last_hidden_width() const;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return config_.widths.back(); }
  /// Output of the last hidden layer (after its activation) of the last forward, (rows, width
  /// of layer n-2); nullptr for a single-layer MLP. Used for hint losses.
  const T* last_hidden() const;

 private:
  struct Layer;
  int64_t in_;
  MlpConfig config_;
  std::vector<std::unique_ptr<Layer>> layers_;
  Tensor<T> grad_a_, grad_b_;
};

extern template class Mlp<float>;
extern template class Mlp<double>;

}  // namespace lockstep::nn

#pragma once
// Internal: keeping non-trainable state (Dice running averages) identical across replicas.

#include "lockstep/core/tensor.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::train {

/// Each rank's training forward changes the state by Δ_r; the step's all-reduce carries
/// n_r·Δ_r in the state's slice of the gradient buffer, and every replica applies
/// state = before + Σ n_r·Δ_r / N. State that no rank changed (a frozen teacher) stays bitwise.
class StateSync {
 public:
  /// `params` must outlive this object. Active only with several ranks and some state.
  StateSync(const Context& ctx, nn::ParamSet<float>& params, int ranks);
  bool active() const { return active_; }

  /// Before the forward: remember the state.
  void snapshot(const Context& ctx);
  /// After the forward: grads[state] = n_samples · (state − snapshot).
  void encode_delta(const Context& ctx, int64_t n_samples);
  /// After the all-reduce, when the step updates (N > 0): state = snapshot + grads[state] / N.
  void apply(const Context& ctx, float inv_samples);

 private:
  nn::ParamSet<float>& params_;
  int64_t begin_ = 0, size_ = 0;
  bool active_ = false;
  Tensor<float> before_;
};

}  // namespace lockstep::train

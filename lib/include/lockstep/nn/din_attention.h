#pragma once
// DIN target attention (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction",
// KDD 2018): a local activation unit scores every history position against the target, and the
// history is pooled with those scores as weights.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/nn/activation.h"
#include "lockstep/nn/mlp.h"

namespace lockstep::nn {

struct DinAttentionConfig {
  /// Hidden widths of the activation unit; a final layer of width 1 gives the score.
  std::vector<int64_t> hidden = {80, 40};
  /// Activation of the unit's hidden layers: prelu (default), dice or sigmoid (any of
  /// activation.h is accepted).
  ActivationConfig activation{ActivationKind::PReLU};
  /// Normalise the scores with a softmax over the valid positions (the paper does not: the
  /// weights keep the intensity of the user's interest).
  bool softmax = false;
  /// Throws Error naming `prefix`.<field> for a bad value.
  void validate(std::string_view prefix) const;
};

/// Per sample b with query q_b (D) and keys k_b,t (D), t < len_b:
///   score_b,t = MLP([q, k, q − k, q ⊙ k])   (widths hidden..., 1)
///   w_b,t = score_b,t, or softmax over t < len_b
///   out_b = Σ_{t < len_b} w_b,t · k_b,t
/// Padding positions never contribute; a zero-length history gives a zero vector and zero
/// gradients to its keys. Parameters: "<name>.unit.input.weight" (4D, H1) and ".bias" (the first
/// layer, whose [q, k, q−k, q⊙k] input is never materialised: see kernels/attention.h), then an
/// Mlp "<name>.unit" over H1. The layer keeps its activations for one forward/backward pair.
template <class T>
class DinAttention {
 public:
  DinAttention(ParamSet<T>& params, const std::string& name, int64_t dim, DinAttentionConfig config);
  ~DinAttention();

  /// q: (B, D) row stride ldq; k: (B, T, D) row stride ldk per position; lengths: (B) on the
  /// device; out: (B, D) row stride ldo (overwritten).
  void forward(const Context& ctx, int64_t B, int64_t Tn, const T* q, int64_t ldq, const T* k,
               int64_t ldk, const int64_t* lengths, T* out, int64_t ldo, bool training);
  /// dout: (B, D) row stride lddo. ACCUMULATES dq (+=, row stride lddq) and dk (+=, row stride
  /// lddk) and the parameter gradients. Uses the activations of the last forward.
  void backward(const Context& ctx, const T* dout, int64_t lddo, T* dq, int64_t lddq, T* dk,
                int64_t lddk);

  /// Attention weights of the last forward, (B, T) (0 at padding positions in softmax mode).
  const T* weights() const { return weights_.data(); }
  int64_t dim() const { return dim_; }

 private:
  /// The unit's first layer and a PReLU run as one kernel (din_unit_prelu_forward/backward).
  bool prelu_fused() const { return act1_ && act1_->kind() == ActivationKind::PReLU; }

  ParamSet<T>* params_;
  int64_t dim_;
  DinAttentionConfig config_;
  typename ParamSet<T>::Handle w1_, b1_;
  std::unique_ptr<Activation<T>> act1_;
  std::unique_ptr<Mlp<T>> rest_;  // hidden[1:] then 1
  // Saved by forward.
  int64_t B_ = 0, T_ = 0, ldq_ = 0, ldk_ = 0;
  const T *q_ = nullptr, *k_ = nullptr;
  const int64_t* lengths_ = nullptr;
  Tensor<T> h1_, a1_, weights_, dweights_, da1_;
};

extern template class DinAttention<float>;
extern template class DinAttention<double>;

}  // namespace lockstep::nn

#pragma once
// A post-LN transformer block with key masking, as in BST (Chen et al., "Behavior Sequence
// Transformer for E-commerce Recommendation in Alibaba", 2019).

#include <memory>
#include <string>

#include "lockstep/nn/layer_norm.h"
#include "lockstep/nn/linear.h"
#include "lockstep/nn/mlp.h"

namespace lockstep::nn {

struct TransformerConfig {
  int64_t heads = 8;           // d_model must be a multiple of heads
  int64_t ffn_width = 32;      // hidden width of the feed-forward network
  float leaky_slope = 0.01f;   // its LeakyReLU
  float dropout = 0.0f;        // on the attention and feed-forward branches, training only
  float layer_norm_eps = 1e-5f;
  void validate(std::string_view prefix, int64_t d_model) const;
};

/// Y = LN2(Z + Dropout(FFN(Z))), Z = LN1(X + Dropout(MHA(X))), on sequences X (B, L, d)
/// contiguous, where MHA is multi-head scaled dot-product self-attention in which query rows
/// attend only to key positions t < lengths[b] (padding keys are masked; a query row of a sample
/// whose length is 0 attends to nothing and its attention output is zero). Padding query rows are
/// computed like the others; callers read out valid positions only.
/// Dropout masks come from the context's counter-based random stream, so CPU and CUDA agree.
/// Parameters "<name>.attn.in" (d, 3d) fused Q|K|V, "<name>.attn.out" (d, d), "<name>.ln1",
/// "<name>.ffn" (d → ffn_width → d), "<name>.ln2".
template <class T>
class TransformerBlock {
 public:
  TransformerBlock(ParamSet<T>& params, const std::string& name, int64_t d_model,
                   TransformerConfig config);
  ~TransformerBlock();

  /// x, y: (B, L, d) contiguous (y must not alias x); lengths: (B) on the device. training
  /// enables dropout. Keeps its activations for backward.
  void forward(const Context& ctx, int64_t B, int64_t L, const int64_t* lengths, const T* x, T* y,
               bool training);
  /// dy: (B, L, d); writes dx (B, L, d) (overwrites; may not alias dy) and accumulates the
  /// parameter gradients.
  void backward(const Context& ctx, const T* dy, T* dx);

  /// Attention probabilities of the last forward, (B, heads, L, L).
  const T* attention() const { return probs_.data(); }

 private:
  int64_t d_, heads_, dh_;
  TransformerConfig config_;
  std::unique_ptr<Linear<T>> in_, out_;
  std::unique_ptr<LayerNorm<T>> ln1_, ln2_;
  std::unique_ptr<Mlp<T>> ffn_;
  // Saved by forward.
  int64_t B_ = 0, L_ = 0;
  const int64_t* lengths_ = nullptr;
  const T* x_ = nullptr;
  bool dropout_on_ = false;
  uint64_t seed_ = 0;
  Context::RandomCounters drop1_{}, drop2_{};  // the dropouts' counters
  Tensor<T> qkv_, probs_, heads_out_, attn_, r1_, z_, r2_;
  // Backward scratch.
  Tensor<T> g_r2_, g_z_, g_r1_, g_attn_, g_heads_, g_scores_, g_qkv_;
};

extern template class TransformerBlock<float>;
extern template class TransformerBlock<double>;

}  // namespace lockstep::nn

#pragma once
// BST: the target item appended to the behaviour sequence, transformer block(s) over it, then
// an MLP (Chen et al., "Behavior Sequence Transformer for E-commerce Recommendation in Alibaba",
// DLP-KDD 2019).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/models/embedding_model.h"
#include "lockstep/nn/bst_encoder.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

using BstOutput = nn::BstReadout;
inline const char* bst_output_name(BstOutput o) { return nn::bst_readout_name(o); }

struct BstConfig {
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;
  /// Pooled fields whose concatenation is the target token (consecutive among pooled fields).
  std::vector<std::string> target = {"item", "item_cat"};
  /// Sequence fields whose per-position concatenation is a history token, in the same order and
  /// widths as `target` (consecutive among the sequence fields).
  std::vector<std::string> sequence = {"hist_items", "hist_cats"};
  /// Optional sequence field of time-gap bucket ids whose embedding (of the token width) is added
  /// to the history tokens, on top of the learned position-index embedding ("" = none).
  std::string time_gap;
  int64_t blocks = 1;
  nn::TransformerConfig transformer;
  BstOutput output = BstOutput::Target;
  bool use_dense = true;
  nn::MlpConfig mlp{{1024, 512, 256, 1}, {nn::ActivationKind::LeakyReLU}, false};
  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
  uint64_t seed = 1;
  void validate() const;
};

/// Tokens (B, L = T + 1, W): position 0 is the target, positions 1..len the history newest first
/// (so a position index is a recency), the rest padding; a learned embedding of the position
/// index (L, W) is added to every token. Transformer blocks attend over the valid tokens
/// (len + 1); the read-out (target token, mean of valid tokens, or all tokens with padding
/// zeroed) ⊕ every pooled field ⊕ dense features → MLP → logit.
template <class T>
class Bst final : public EmbeddingModel<T> {
 public:
  using Model<T>::forward;
  Bst(BstConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
      const Context& ctx);
  ~Bst() override;

  std::string name() const override { return "bst"; }
  const T* forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) override;
  void backward(const Context& ctx, const T* dlogits) override;

  const BstConfig& config() const { return config_; }
  int64_t token_width() const { return width_tok_; }
  /// Width of the MLP input: read-out, pooled fields and dense features.
  int64_t input_width() const { return width_; }

 private:
  BstConfig config_;
  std::unique_ptr<nn::BstEncoder<T>> encoder_;
  std::unique_ptr<nn::Mlp<T>> mlp_;
  int64_t width_tok_ = 0, out_width_ = 0, width_ = 0, t_col_ = 0, s_col_ = 0, g_col_ = -1;
  Tensor<T> x_, dx_;
};

extern template class Bst<float>;
extern template class Bst<double>;

}  // namespace lockstep::models

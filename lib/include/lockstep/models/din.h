#pragma once
// DIN: target attention over the behaviour history, then an MLP (Zhou et al., KDD 2018).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/models/embedding_model.h"
#include "lockstep/nn/din_attention.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

struct DinConfig {
  std::vector<embedding::TableConfig> tables;
  /// Pooled fields and the sequence fields of the history (max_len > 0).
  std::vector<embedding::FieldConfig> fields;
  /// The target: pooled fields whose concatenation is the query q (e.g. item ⊕ category).
  /// They must be consecutive among the pooled fields.
  std::vector<std::string> query = {"item", "item_cat"};
  /// The history: sequence fields whose per-position concatenation is the key k, in the same
  /// order and with the same widths as `query`, consecutive among the sequence fields.
  std::vector<std::string> keys = {"hist_items", "hist_cats"};
  nn::DinAttentionConfig attention;
  bool use_dense = true;
  nn::MlpConfig mlp{{200, 80, 1}, {nn::ActivationKind::PReLU}, false};
  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
  uint64_t seed = 1;
  void validate() const;
};

/// logit = MLP([attention(q, history) ⊕ pooled fields ⊕ dense]); the pooled fields include the
/// target itself and every other feature (user, context).
template <class T>
class Din final : public EmbeddingModel<T> {
 public:
  using Model<T>::forward;
  Din(DinConfig config, const std::vector<std::string>& sparse_columns, int64_t num_dense,
      const Context& ctx);
  ~Din() override;

  std::string name() const override { return "din"; }
  const T* forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) override;
  void backward(const Context& ctx, const T* dlogits) override;

  const DinConfig& config() const { return config_; }
  nn::DinAttention<T>& attention() { return *attention_; }
  int64_t input_width() const { return width_; }

 private:
  DinConfig config_;
  std::unique_ptr<nn::DinAttention<T>> attention_;
  std::unique_ptr<nn::Mlp<T>> mlp_;
  int64_t dim_ = 0, width_ = 0, q_col_ = 0, k_col_ = 0;
  Tensor<T> x_, dx_;
};

extern template class Din<float>;
extern template class Din<double>;

}  // namespace lockstep::models

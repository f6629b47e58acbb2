#pragma once
// The first model: pooled embeddings ⊕ dense features → MLP → logit.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/models/embedding_model.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

struct EmbeddingMlpConfig {
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;
  bool use_dense = true;  // append the batch's dense features to the MLP input
  nn::MlpConfig mlp{{200, 80, 1}, {nn::ActivationKind::PReLU}, false};
  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  // Row-wise Adagrad normalises each row's step by its accumulated gradient, so a large rate is
  // right: 0.5 gave the best held-out AUC on the demo data (docs/training.md).
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
  uint64_t seed = 1;
  /// Throws Error naming the field and its allowed range (the MLP must end in width 1).
  void validate() const;
};

/// Reads a model configuration from TOML (see docs/configuration.md): `seed`, [model]
/// (use_dense, [model.mlp], [[model.tables]], [[model.fields]]), [optimizer] and
/// [sparse_optimizer]. Errors name the file, line and key, e.g.
/// "model.toml:7: model.mlp.widths[1] = 0 is out of range: must be in [1, 1048576]".
EmbeddingMlpConfig load_embedding_mlp_config(const std::string& path);
/// The same over TOML text in memory; `source` stands for the path in error messages.
EmbeddingMlpConfig parse_embedding_mlp_config(std::string_view toml_text,
                                              const std::string& source = "config");

/// logit = MLP([pool(field_1) ⊕ … ⊕ pool(field_k) ⊕ dense]).
template <class T>
class EmbeddingMlp final : public EmbeddingModel<T> {
 public:
  using Model<T>::forward;
  /// `sparse_columns`: names of the data's sparse/sequence columns in Batch order;
  /// `num_dense`: width of Batch::dense. Allocates and initialises all parameters on ctx.
  EmbeddingMlp(EmbeddingMlpConfig config, const std::vector<std::string>& sparse_columns,
               int64_t num_dense, const Context& ctx);
  ~EmbeddingMlp() override;

  std::string name() const override { return "embedding_mlp"; }
  const T* forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) override;
  void backward(const Context& ctx, const T* dlogits) override;

  const EmbeddingMlpConfig& config() const { return config_; }
  /// Width of the MLP input: embedding fields plus dense features.
  int64_t input_width() const { return input_width_; }

 private:
  EmbeddingMlpConfig config_;
  std::unique_ptr<nn::Mlp<T>> mlp_;
  int64_t input_width_ = 0;
  Tensor<T> input_, dinput_;
};

extern template class EmbeddingMlp<float>;
extern template class EmbeddingMlp<double>;

}  // namespace lockstep::models

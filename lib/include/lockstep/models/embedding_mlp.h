#pragma once
// The first model: pooled embeddings ⊕ dense features → MLP → logit, optionally plus the FM
// first- and second-order terms at the logit (LR, FM and DeepFM exactly).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/models/embedding_model.h"
#include "lockstep/nn/fm.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

/// The FM terms added to the logit ([model.fm], docs/configuration.md "LR, FM and DeepFM
/// exactly").
struct FmTermsConfig {
  /// Σ over every id of its weight: the pooled fields that read a table of `linear_tables`
  /// (dim 1, sum pooling), summed.
  bool first_order = false;
  /// Σ_{f<g} <v_f, v_g> over the pooled fields `fields` (consecutive, one width).
  bool second_order = false;
  /// The first-order tables (the shorthand makes "<table>.linear" per table and lists them).
  /// Their fields must come first in `fields` of the model, before every other field.
  std::vector<std::string> linear_tables;
  /// Columns of the second-order fields; empty: every pooled field that is not first-order.
  std::vector<std::string> fields;
  bool any() const { return first_order || second_order; }
};

struct EmbeddingMlpConfig {
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;
  bool use_dense = true;  // append the batch's dense features to the MLP input
  /// widths = []: no deep part (then [model.fm] must add a term and use_dense be false).
  nn::MlpConfig mlp{{200, 80, 1}, {nn::ActivationKind::PReLU}, false};
  FmTermsConfig fm;
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

/// logit = MLP([pool(field_1) ⊕ … ⊕ pool(field_k) ⊕ dense])
///         [+ Σ first-order fields] [+ Σ_d FmInteraction(second-order fields)_d].
/// Without an MLP the logit starts from a bias parameter "fm.bias". The first-order fields (the
/// first ones, dim 1) are not MLP inputs; the second-order fields are, when there is an MLP
/// (DeepFM: the embeddings are shared).
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
  /// Width of the MLP input: embedding fields plus dense features (0 without an MLP).
  int64_t input_width() const { return input_width_; }
  /// The terms of the last forward, each (rows) or nullptr when the model has none: the MLP's
  /// logit, the first-order sum and the second-order scalar Σ_{f<g} <v_f, v_g>.
  const T* mlp_logits() const { return mlp_out_; }
  const T* first_order_terms() const { return has_first_ ? first_.data() : nullptr; }
  const T* second_order_terms() const { return fm_ ? second_.data() : nullptr; }

 private:
  const T* forward_fm(const Context& ctx, const DeviceBatch<T>& batch, bool training);
  void backward_fm(const Context& ctx, const T* dlogits);

  EmbeddingMlpConfig config_;
  std::unique_ptr<nn::Mlp<T>> mlp_;
  int64_t input_width_ = 0;
  Tensor<T> input_, dinput_;
  // With [model.fm]: all_ (rows, ld_all_) = [first-order (k) | embeddings | dense].
  int64_t k_ = 0, ld_all_ = 0, fm_offset_ = 0;
  bool has_first_ = false;
  std::unique_ptr<nn::FmInteraction<T>> fm_;
  typename nn::ParamSet<T>::Handle bias_ = -1;
  const T* mlp_out_ = nullptr;
  Tensor<T> all_, dall_, ones_, fm_out_, dfm_out_, first_, second_, logit_;
};

extern template class EmbeddingMlp<float>;
extern template class EmbeddingMlp<double>;

}  // namespace lockstep::models

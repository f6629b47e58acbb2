#pragma once
// The skeleton every model shares: an embedding layer (EmbeddingBagCollection), dense
// parameters in one ParamSet with their optimizer, staging, the update and the accessors.
// EmbeddingMlp, Din, Bst and DualDnn add their layers and forward/backward on top.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/models/model.h"
#include "lockstep/nn/mlp.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::models {

/// What the embedding layer of a model is built from (the parts of its configuration).
struct EmbeddingSpec {
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;
  nn::OptimizerConfig sparse_optimizer;
  bool use_dense = true;
};

/// Validates `config` (Config::validate() throws ConfigError naming the key) and returns its
/// embedding part: the first thing a model's constructor does.
template <class Config>
EmbeddingSpec validated_embedding_spec(const Config& config) {
  config.validate();
  return {config.tables, config.fields, config.sparse_optimizer, config.use_dense};
}

/// Checks shared by every model configuration, in the order models report them, each throwing
/// ConfigError naming the key: "model.tables" (non-empty, each valid) and "model.fields"
/// (embedding::check_layout); an MLP under `mlp_key` that ends in the logit (width 1); the dense
/// ("optimizer") and sparse ("sparse_optimizer": adagrad or adam) optimizers.
void validate_embedding_layout(const std::vector<embedding::TableConfig>& tables,
                               const std::vector<embedding::FieldConfig>& fields);
void validate_logit_mlp(const nn::MlpConfig& mlp, const std::string& mlp_key);
void validate_optimizers(const nn::OptimizerConfig& dense, const nn::OptimizerConfig& sparse);

template <class T>
class EmbeddingModel : public Model<T> {
 public:
  using Model<T>::forward;
  ~EmbeddingModel() override;

  /// Stages the batch for the embedding layer (keys -> rows, lengths, dense, labels): one copy.
  void stage(const Context& ctx, const data::Batch& batch, DeviceBatch<T>& out) override {
    embeddings_->stage(ctx, batch, out);
  }
  /// Dense optimizer over every trainable parameter, then the tables' sparse optimizer.
  void apply_gradients(const Context& ctx, T grad_scale) override;
  nn::ParamSet<T>& dense_params() override { return params_; }
  std::vector<embedding::EmbeddingTable<T>*> tables() override {
    return embeddings_->table_pointers();
  }
  nn::DenseOptimizer<T>& dense_optimizer() override { return *optimizer_; }

  embedding::EmbeddingBagCollection<T>& embeddings() { return *embeddings_; }
  const embedding::EmbeddingBagCollection<T>& embeddings() const { return *embeddings_; }
  /// Width of the dense features the model reads (0 when use_dense is false).
  int64_t num_dense() const { return num_dense_; }

 protected:
  /// Builds the embedding layer; the derived constructor then adds its layers to params_ and
  /// calls allocate(). `num_dense`: width of Batch::dense (ignored unless spec.use_dense).
  EmbeddingModel(const EmbeddingSpec& spec, const std::vector<std::string>& sparse_columns,
                 int64_t num_dense);
  /// Allocates and initialises the dense parameters and the tables on ctx, and creates the
  /// dense optimizer over the trainable parameters.
  void allocate(const Context& ctx, uint64_t seed, const nn::OptimizerConfig& dense_optimizer);

  /// The embedding forward of a step: x (rows, ldx) gets the pooled fields at column
  /// `pooled_at` and the dense features right after them; seq_ (rows·T, sequence width) the
  /// sequence fields (when there are any). Sets rows_.
  void embed(const Context& ctx, const DeviceBatch<T>& batch, T* x, int64_t ldx, int64_t pooled_at);
  /// Zeroed dseq_ (rows·T, sequence width) for the backward of the sequence fields.
  T* zeroed_sequence_grad(const Context& ctx);
  /// The embedding backward: dx (rows, lddx) holds the pooled fields' gradient at `pooled_at`,
  /// dseq_ the sequence fields'.
  void embed_backward(const Context& ctx, const T* dx, int64_t lddx, int64_t pooled_at);
  /// The wide term of dynamic tables (EmbeddingBagCollection::wide()) added to the logits of
  /// the last embed(): returns `logits` itself when the model has no dynamic table, else a
  /// buffer of the model holding logits + wide.
  const T* with_wide(const Context& ctx, const T* logits);
  /// In backward(), before embed_backward(): the logits' gradient, which is the wide term's.
  void set_wide_grad(const T* dlogits) { dwide_ = dlogits; }

  int64_t num_dense_;
  nn::ParamSet<T> params_;
  std::unique_ptr<embedding::EmbeddingBagCollection<T>> embeddings_;
  std::unique_ptr<nn::DenseOptimizer<T>> optimizer_;
  int64_t rows_ = 0;
  Tensor<T> seq_, dseq_;
  Tensor<T> wide_logits_;
  const T* dwide_ = nullptr;
};

extern template class EmbeddingModel<float>;
extern template class EmbeddingModel<double>;

}  // namespace lockstep::models

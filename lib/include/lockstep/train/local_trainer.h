#pragma once
// Single-process training steps: the building block of the example trainer. The multi-rank
// lockstep trainer adds the per-step collective between backward and update.

#include <vector>

#include "lockstep/models/model.h"
#include "lockstep/nn/loss.h"

namespace lockstep::train {

template <class T>
class LocalTrainer {
 public:
  /// `model` and `ctx` must outlive the trainer.
  LocalTrainer(models::Model<T>& model, const Context& ctx);

  /// One optimizer step on `batch`: loss = Σ BCE, gradient = mean over the batch's samples.
  /// An empty batch changes nothing (optimizer state included). Returns the summed loss.
  double step(const data::Batch& batch);

  /// The first half of a step: clears the dense gradients, runs forward and backward on a
  /// non-empty batch, and leaves the SUMMED gradients in the model (dense in its ParamSet,
  /// sparse in its tables). Returns the summed loss. The multi-rank trainer all-reduces the
  /// gradients between this and the model's apply_gradients(1 / global samples).
  double compute_gradients(const data::Batch& batch);

  /// Click probabilities σ(logit) for `batch` in inference mode (Dice uses running averages).
  std::vector<float> predict(const data::Batch& batch);

  int64_t steps() const { return steps_; }

 private:
  models::Model<T>* model_;
  const Context* ctx_;
  nn::BceWithLogits<T> loss_;
  Tensor<T> labels_, dlogits_, loss_sum_;
  int64_t steps_ = 0;
};

extern template class LocalTrainer<float>;
extern template class LocalTrainer<double>;

}  // namespace lockstep::train

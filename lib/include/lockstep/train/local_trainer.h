#pragma once
// Single-process training steps: the building block of the example trainer. The multi-rank
// lockstep trainer adds the per-step collective between backward and update.

#include <vector>

#include "lockstep/models/model.h"

namespace lockstep::train {

template <class T>
class LocalTrainer {
 public:
  /// `model` and `ctx` must outlive the trainer (a temporary Context is refused at compile time).
  LocalTrainer(models::Model<T>& model, const Context& ctx);
  LocalTrainer(models::Model<T>& model, Context&& ctx) = delete;

  /// Host -> device, once per step: stages `batch` into the trainer's own DeviceBatch (valid
  /// until the next stage()) and returns it.
  models::DeviceBatch<T>& stage(const data::Batch& batch);

  /// The first half of a step on a staged, non-empty batch: clears the dense gradients, runs
  /// forward and the model's loss_and_backward, and leaves the SUMMED gradients in the model
  /// (dense in its ParamSet, sparse in its tables). Returns the device pointer (one element,
  /// valid until the next call) to the summed loss; nothing is read back to the host. The
  /// multi-rank trainer all-reduces the gradients between this and the model's
  /// apply_gradients(1 / global samples).
  const T* compute_gradients(const models::DeviceBatch<T>& batch);

  /// One optimizer step on `batch` (stage, compute_gradients, update with the mean over the
  /// batch's samples). An empty batch changes nothing (optimizer state included). Returns the
  /// summed loss (read from the device).
  double step(const data::Batch& batch);

  /// Click probabilities σ(logit) for `batch` in inference mode (Dice uses running averages).
  std::vector<float> predict(const data::Batch& batch);
  /// The probabilities of every output (Model::output_names(), the served one first) for
  /// `batch`, from one forward pass in inference mode.
  std::vector<std::vector<float>> predict_outputs(const data::Batch& batch);

  int64_t steps() const { return steps_; }
  models::Model<T>& model() const { return *model_; }

 private:
  models::Model<T>* model_;
  const Context* ctx_;
  models::DeviceBatch<T> batch_;
  Tensor<T> loss_sum_;
  int64_t steps_ = 0;
};

extern template class LocalTrainer<float>;
extern template class LocalTrainer<double>;

}  // namespace lockstep::train

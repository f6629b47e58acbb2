#pragma once
// The interface every CTR model implements, so trainers can drive any of them.

#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/embedding/embedding_table.h"
#include "lockstep/nn/optimizer.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::models {

/// A binary-classification model with dense parameters in one ParamSet and sparse parameters in
/// embedding tables. One forward/backward pair at a time (layers keep their activations).
template <class T>
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string name() const = 0;

  /// Uploads `batch` to ctx's device and returns the logits (batch.size) on that device, valid
  /// until the next forward. training: batch statistics (Dice) and gradients will follow.
  virtual const T* forward(const Context& ctx, const data::Batch& batch, bool training) = 0;
  /// Given dL/dlogits (rows) on ctx's device, ACCUMULATES dense gradients into
  /// dense_params().grads() and computes the tables' sparse gradients.
  virtual void backward(const Context& ctx, const T* dlogits) = 0;

  /// Models whose training loss is not BCE on forward()'s logits (the dual DNN: teacher and
  /// student losses plus distillation) return true and implement loss_and_backward().
  virtual bool has_custom_loss() const { return false; }
  /// After forward(training = true): computes the training loss against `labels` (rows, on the
  /// device) as a SUM over samples, and runs the backward pass for it. Returns the loss.
  virtual double loss_and_backward(const Context& ctx, const T* labels) {
    throw Error(name() + " has no custom loss: train it with BCE on its logits");
  }
  /// Clears the dense gradients before a step.
  virtual void zero_grad(const Context& ctx) { dense_params().zero_grad(ctx); }
  /// One optimizer step on dense and sparse parameters with gradients scaled by grad_scale
  /// (1 / samples of the step).
  virtual void apply_gradients(const Context& ctx, T grad_scale) = 0;

  virtual nn::ParamSet<T>& dense_params() = 0;
  virtual std::vector<embedding::EmbeddingTable<T>*> tables() = 0;
  /// The optimizer of dense_params() (its state and step count go into checkpoints).
  virtual nn::DenseOptimizer<T>& dense_optimizer() = 0;
};

}  // namespace lockstep::models

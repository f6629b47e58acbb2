#pragma once
// The interface every CTR model implements, so trainers can drive any of them.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/embedding/device_batch.h"
#include "lockstep/embedding/embedding_table.h"
#include "lockstep/nn/loss.h"
#include "lockstep/nn/optimizer.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::models {

using embedding::DeviceBatch;

/// A binary-classification model with dense parameters in one ParamSet and sparse parameters in
/// embedding tables. One forward/backward pair at a time (layers keep their activations).
///
/// A step: stage() the host batch into a DeviceBatch (the one host -> device copy), forward(),
/// loss_and_backward() (or backward() with your own loss), apply_gradients(). Forward, backward
/// and loss never read device memory back to the host.
template <class T>
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string name() const = 0;

  /// Host -> device, once per step: writes `batch` into `out` in the layout this model's
  /// forward() reads. The default stages dense features and labels only (no embeddings).
  virtual void stage(const Context& ctx, const data::Batch& batch, DeviceBatch<T>& out) {
    out.stage(ctx, batch);
  }
  /// Returns the logits (batch.size()) on ctx's device, valid until the next forward. `batch`
  /// (staged by this model's stage()) must stay alive until the backward pass. training: batch
  /// statistics (Dice) and gradients will follow. Implementations set logits_.
  virtual const T* forward(const Context& ctx, const DeviceBatch<T>& batch, bool training) = 0;
  /// Convenience for tests and tools: stages `batch` into a DeviceBatch the model owns, then
  /// forward(). (Derived classes re-export it with `using Model<T>::forward`.)
  const T* forward(const Context& ctx, const data::Batch& batch, bool training) {
    if (!own_batch_) own_batch_ = std::make_unique<DeviceBatch<T>>();
    stage(ctx, batch, *own_batch_);
    return forward(ctx, *own_batch_, training);
  }
  /// Given dL/dlogits (rows) on ctx's device, ACCUMULATES dense gradients into
  /// dense_params().grads() and computes the tables' sparse gradients. For a model trained
  /// with several losses (the dual DNN) dlogits is the gradient at its output logits only.
  virtual void backward(const Context& ctx, const T* dlogits) = 0;

  /// After forward(batch, training = true): the training loss against batch.labels() summed
  /// over samples, written to ONE element `loss_sum` in device memory (no host read), and the
  /// backward pass for it. Default: BCE on forward()'s logits, then backward().
  virtual void loss_and_backward(const Context& ctx, const DeviceBatch<T>& batch, T* loss_sum) {
    LOCKSTEP_CHECK(batch.labels() != nullptr, "batch has {} labels for {} samples",
                   batch.num_labels(), batch.size());
    LOCKSTEP_CHECK(logits_ != nullptr, "{}: loss_and_backward() before forward()", name());
    dlogits_.resize(ctx, {batch.size()});
    bce_.forward_backward(ctx, batch.size(), logits_, batch.labels(), T(1), dlogits_.data(),
                          loss_sum);
    backward(ctx, dlogits_.data());
  }
  /// The end of a training epoch, on every rank after its last step: dynamic tables with
  /// shrink_each_epoch apply the shrink boundary (decay, unseen days, deletion).
  virtual void end_epoch(const Context& ctx) {
    for (auto* t : tables()) t->end_epoch(ctx);
  }
  /// Clears the dense gradients before a step.
  virtual void zero_grad(const Context& ctx) { dense_params().zero_grad(ctx); }
  /// One optimizer step on dense and sparse parameters with gradients scaled by grad_scale
  /// (1 / samples of the step).
  virtual void apply_gradients(const Context& ctx, T grad_scale) = 0;

  /// The outputs evaluation reports, the served one first: {"model"} for a one-tower model,
  /// {"student", "teacher"} for the dual DNN.
  virtual std::vector<std::string> output_names() const { return {"model"}; }
  /// After forward(): the logits of output_names()[i] on ctx's device (i = 0: forward()'s).
  virtual const T* output_logits(size_t i) const {
    LOCKSTEP_CHECK(i == 0, "{}: output {} of 1", name(), i);
    return logits_;
  }
  /// The parts of the training loss the model reports besides their weighted sum (the dual DNN:
  /// teacher, student, kd, hint); empty for a model trained with one loss.
  virtual std::vector<std::string> loss_term_names() const { return {}; }
  /// Each loss_term_names() part summed over the samples of every loss_and_backward() since the
  /// previous call (this rank's), then reset. Reads the device.
  virtual std::vector<double> take_loss_terms(const Context& /*ctx*/) { return {}; }

  virtual nn::ParamSet<T>& dense_params() = 0;
  virtual std::vector<embedding::EmbeddingTable<T>*> tables() = 0;
  /// The optimizer of dense_params() (its state and step count go into checkpoints).
  virtual nn::DenseOptimizer<T>& dense_optimizer() = 0;

 protected:
  /// The logits of the last forward() (the default loss reads them).
  const T* logits_ = nullptr;

 private:
  std::unique_ptr<DeviceBatch<T>> own_batch_;
  nn::BceWithLogits<T> bce_;
  Tensor<T> dlogits_;
};

}  // namespace lockstep::models

#pragma once
// Single-process training steps: the building block of the example trainer. The multi-rank
// lockstep trainer adds the per-step collective between backward and update.

#include <memory>
#include <vector>

#include "lockstep/models/model.h"

namespace lockstep::train {

class StepGraphs;  // train/step_graphs.h

/// What became of compute_gradients() calls with graphs on (LocalTrainer::set_graphs).
struct GraphStats {
  int64_t eager = 0;           // run by launching every kernel (first sight of a shape, ...)
  int64_t captured = 0;        // captured into a graph (and that graph launched)
  int64_t replayed = 0;        // run by launching a graph captured earlier
  int64_t fallbacks = 0;       // a graph found unusable, the step run eagerly instead
  int64_t not_capturable = 0;  // shapes whose step a graph cannot hold (host reads or copies)
};

template <class T>
class LocalTrainer {
 public:
  /// `model` and `ctx` must outlive the trainer (a temporary Context is refused at compile time).
  LocalTrainer(models::Model<T>& model, const Context& ctx);
  LocalTrainer(models::Model<T>& model, Context&& ctx) = delete;
  ~LocalTrainer();

  /// CUDA graphs (train/step_graphs.h): compute_gradients() is captured once per batch shape
  /// and then replayed; batches are staged padded (DeviceBatch::set_pad_ids) so that their
  /// shapes repeat. The bits are those of launching every kernel. On by default on a CUDA
  /// context with ctx.options().cuda_graphs (dynamic tables included: their forward and
  /// backward read the batch's distinct keys and their count on the device; their update, with
  /// its eviction check, runs after the region). On the CPU, set_graphs(true) replays the kept
  /// launches instead: nothing to gain, but the same logic, for tests. Stage batches after
  /// changing it.
  void set_graphs(bool on);
  bool graphs() const { return graphs_ != nullptr; }
  /// Zeros while graphs are off.
  GraphStats graph_stats() const;

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
  std::unique_ptr<StepGraphs> graphs_;  // null: graphs off
  std::vector<int64_t> key_;            // the running batch's graph key (kept: no allocation)
};

extern template class LocalTrainer<float>;
extern template class LocalTrainer<double>;

}  // namespace lockstep::train

#pragma once
// Scoring a model over a data set and the metrics of its outputs: what the trainer's evaluation
// and lockstep-eval share, so that both report the same numbers for the same parameters.

#include <string>
#include <vector>

#include "lockstep/train/batch_source.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/metrics.h"

namespace lockstep::train {

/// One evaluation: every output of the model over every sample.
struct EvalResult {
  int64_t samples = 0;
  double logloss = NAN;  // the served output's (outputs[0]): mean over all ranks' samples
  double auc = NAN;      // exact: all ranks' scores gathered (NaN when a class is absent)
  /// Model::output_names() ({"model"}, or {"student", "teacher"} for the dual DNN) and each
  /// one's metrics, the served output first.
  std::vector<std::string> output_names;
  std::vector<BinaryMetrics> outputs;
  /// The metrics of output `name`; nullptr when the model has none of that name.
  const BinaryMetrics* output(const std::string& name) const;
};

/// This rank's scores of `data` (start_epoch(0), then every batch), in inference mode.
struct Scores {
  std::vector<std::string> output_names;
  std::vector<std::vector<float>> probs;  // per output, in the order the source gives records
  std::vector<float> labels;
  std::vector<uint64_t> sample_ids;       // Batch::sample_ids, when the source gives them
};
Scores score(LocalTrainer<float>& model, BatchSource& data);

/// The metrics of every output of `scores` (all of a data set's scores: gathered from every rank
/// for a multi-rank evaluation).
EvalResult eval_result(const Scores& scores);

}  // namespace lockstep::train

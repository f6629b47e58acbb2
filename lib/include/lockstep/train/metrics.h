#pragma once
// Evaluation metrics for binary click prediction: ROC AUC and log loss.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lockstep::train {

/// Exact area under the ROC curve of `scores` (higher = more likely positive) against
/// `labels` (positive when label >= 0.5): the probability that a random positive scores above
/// a random negative, ties counting one half. Computed as the Mann–Whitney U statistic with
/// average ranks for tied scores, in O(n log n) time and O(n) memory.
/// Returns NaN when there are no positives or no negatives (the AUC is undefined).
/// Throws lockstep::Error when a score or label is NaN. Thread-safe.
double roc_auc(const float* scores, const float* labels, size_t n);
double roc_auc(const std::vector<float>& scores, const std::vector<float>& labels);

/// Sum over samples of the binary cross-entropy of sigmoid(logit) against the label:
///   max(z, 0) - z*y + log(1 + exp(-|z|)),
/// which is exact and finite for any finite logit z (no overflow for large |z|) and accepts
/// soft labels y in [0, 1]. Summed, not averaged, so partial sums from several ranks add up.
double log_loss_sum(const float* logits, const float* labels, size_t n);

/// log_loss_sum / n; NaN when n == 0.
double mean_log_loss(const float* logits, const float* labels, size_t n);
double mean_log_loss(const std::vector<float>& logits, const std::vector<float>& labels);

/// Mean binary cross-entropy of probabilities p against labels, with p clamped to
/// [1e-7, 1 - 1e-7] (for models or generators that only give probabilities); NaN when n == 0.
double mean_log_loss_from_probs(const std::vector<float>& probs, const std::vector<float>& labels);

/// What evaluation reports for one output of a model over a data set.
struct BinaryMetrics {
  int64_t samples = 0;
  double auc = NAN;                 // roc_auc (NaN when a class is absent)
  double logloss = NAN;             // mean_log_loss_from_probs
  double mean_prediction = NAN;     // mean predicted probability
  double observed_ctr = NAN;        // mean label
  /// mean_prediction / observed_ctr: 1 = calibrated, > 1 over-predicts (NaN when no positives).
  double calibration = NAN;
  /// logloss / the entropy of always predicting observed_ctr (He et al. 2014): < 1 beats the
  /// base rate; NaN when a class is absent.
  double normalized_entropy = NAN;
};

/// Every metric of BinaryMetrics for click probabilities `probs` against `labels` (NaN fields
/// when there are no samples). Throws Error on a size mismatch or a NaN.
BinaryMetrics binary_metrics(const std::vector<float>& probs, const std::vector<float>& labels);

}  // namespace lockstep::train

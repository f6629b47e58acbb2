#include "lockstep/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "lockstep/core/error.h"

namespace lockstep::train {

namespace {

void check_sizes(const char* what, size_t a, size_t b) {
  LOCKSTEP_CHECK(a == b, "{}: {} predictions but {} labels", what, a, b);
}

}  // namespace

double roc_auc(const float* scores, const float* labels, size_t n) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  for (size_t i = 0; i < n; ++i) {
    LOCKSTEP_CHECK(!std::isnan(scores[i]), "roc_auc: score {} is NaN", i);
    LOCKSTEP_CHECK(!std::isnan(labels[i]), "roc_auc: label {} is NaN", i);
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });

  // Sum of the (1-based, tie-averaged) ranks of the positives. Ranks are exact in double up to
  // 2^53 and a tie group's average rank is a multiple of 1/2, so the sum is exact for any n a
  // machine can hold in memory.
  double positive_rank_sum = 0.0;
  size_t positives = 0;
  for (size_t lo = 0; lo < n;) {
    size_t hi = lo + 1;
    while (hi < n && scores[order[hi]] == scores[order[lo]]) ++hi;
    const double average_rank = 0.5 * (static_cast<double>(lo + 1) + static_cast<double>(hi));
    size_t group_positives = 0;
    for (size_t k = lo; k < hi; ++k) group_positives += labels[order[k]] >= 0.5f;
    positive_rank_sum += average_rank * static_cast<double>(group_positives);
    positives += group_positives;
    lo = hi;
  }
  const size_t negatives = n - positives;
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  const double p = static_cast<double>(positives);
  const double u = positive_rank_sum - p * (p + 1.0) / 2.0;
  return u / (p * static_cast<double>(negatives));
}

double roc_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  check_sizes("roc_auc", scores.size(), labels.size());
  return roc_auc(scores.data(), labels.data(), scores.size());
}

double log_loss_sum(const float* logits, const float* labels, size_t n) {
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double z = logits[i], y = labels[i];
    sum += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z)));
  }
  return sum;
}

double mean_log_loss(const float* logits, const float* labels, size_t n) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  return log_loss_sum(logits, labels, n) / static_cast<double>(n);
}

double mean_log_loss(const std::vector<float>& logits, const std::vector<float>& labels) {
  check_sizes("mean_log_loss", logits.size(), labels.size());
  return mean_log_loss(logits.data(), labels.data(), logits.size());
}

double mean_log_loss_from_probs(const std::vector<float>& probs, const std::vector<float>& labels) {
  check_sizes("mean_log_loss_from_probs", probs.size(), labels.size());
  if (probs.empty()) return std::numeric_limits<double>::quiet_NaN();
  constexpr double kEps = 1e-7;
  double sum = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double p = std::clamp(static_cast<double>(probs[i]), kEps, 1.0 - kEps);
    const double y = labels[i];
    sum -= y * std::log(p) + (1.0 - y) * std::log1p(-p);
  }
  return sum / static_cast<double>(probs.size());
}

BinaryMetrics binary_metrics(const std::vector<float>& probs, const std::vector<float>& labels) {
  check_sizes("binary_metrics", probs.size(), labels.size());
  BinaryMetrics m;
  m.samples = static_cast<int64_t>(probs.size());
  if (probs.empty()) return m;
  m.auc = roc_auc(probs, labels);
  m.logloss = mean_log_loss_from_probs(probs, labels);
  double p_sum = 0, y_sum = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    p_sum += probs[i];
    y_sum += labels[i];
  }
  const double n = static_cast<double>(probs.size());
  m.mean_prediction = p_sum / n;
  m.observed_ctr = y_sum / n;
  if (y_sum > 0) m.calibration = m.mean_prediction / m.observed_ctr;
  const double ctr = m.observed_ctr;
  if (ctr > 0 && ctr < 1)
    m.normalized_entropy = m.logloss / -(ctr * std::log(ctr) + (1 - ctr) * std::log1p(-ctr));
  return m;
}

}  // namespace lockstep::train

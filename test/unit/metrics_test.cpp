#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "lockstep/core/error.h"
#include "lockstep/train/metrics.h"
#include "test_util.h"

using namespace lockstep;
using namespace lockstep::train;
using Catch::Matchers::Contains;

namespace {

// The AUC by definition: over all (positive, negative) pairs, 1 when the positive scores
// higher, 1/2 on a tie.
double brute_force_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] < 0.5f) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (labels[j] >= 0.5f) continue;
      wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
      pairs += 1;
    }
  }
  return wins / pairs;
}

}  // namespace

TEST_CASE("roc_auc equals the pairwise definition on random data with ties", "[metrics]") {
  std::mt19937_64 rng(17);
  for (const size_t n : {2, 3, 5, 17, 100, 1001}) {
    for (const int levels : {2, 5, 1000000}) {  // few levels: many ties
      INFO("n " << n << ", score levels " << levels);
      std::vector<float> scores(n), labels(n);
      std::uniform_int_distribution<int> level(0, levels - 1);
      std::bernoulli_distribution positive(0.3);
      for (size_t i = 0; i < n; ++i) {
        scores[i] = static_cast<float>(level(rng)) / static_cast<float>(levels);
        labels[i] = positive(rng) ? 1.0f : 0.0f;
      }
      labels[0] = 1.0f;  // both classes present
      labels[1] = 0.0f;
      CHECK(roc_auc(scores, labels) == Approx(brute_force_auc(scores, labels)).margin(1e-12));
    }
  }
}

TEST_CASE("roc_auc of perfect, inverted, constant and hand-checked rankings", "[metrics]") {
  const std::vector<float> labels = {0, 0, 1, 0, 1, 1};
  CHECK(roc_auc({0.1f, 0.2f, 0.7f, 0.3f, 0.8f, 0.9f}, labels) == 1.0);
  CHECK(roc_auc({0.9f, 0.8f, 0.3f, 0.7f, 0.2f, 0.1f}, labels) == 0.0);
  CHECK(roc_auc({0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, labels) == 0.5);
  // The classic example: positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs.
  CHECK(roc_auc({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}) == 0.75);
  // One tie between a positive and a negative counts one half: (1 + 0.5) / 2.
  CHECK(roc_auc({0.2f, 0.5f, 0.5f}, {0, 0, 1}) == 0.75);
  // Labels are positive from 0.5 up.
  CHECK(roc_auc({0.1f, 0.9f}, {0.2f, 0.7f}) == 1.0);
  // Infinite scores are ordered like any others.
  CHECK(roc_auc({-INFINITY, INFINITY}, {0, 1}) == 1.0);
}

TEST_CASE("roc_auc is NaN without both classes and rejects NaN input", "[metrics]") {
  CHECK(std::isnan(roc_auc({0.1f, 0.2f}, {1, 1})));
  CHECK(std::isnan(roc_auc({0.1f, 0.2f}, {0, 0})));
  CHECK(std::isnan(roc_auc(std::vector<float>{}, std::vector<float>{})));
  CHECK_THROWS_WITH(roc_auc({0.1f, NAN}, {0, 1}), Contains("score 1 is NaN"));
  CHECK_THROWS_WITH(roc_auc({0.1f, 0.2f}, {0, NAN}), Contains("label 1 is NaN"));
  CHECK_THROWS_WITH(roc_auc({0.1f, 0.2f}, {0}), Contains("2 predictions but 1 labels"));
}

TEST_CASE("roc_auc handles a large input in n log n", "[metrics]") {
  // 2M samples whose score is the label plus noise: the AUC is P(N1 + 1 > N2) for two
  // independent N(0, 1) noises, Phi(1 / sqrt(2)) = 0.76025.
  const size_t n = 2000000;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> scores(n), labels(n);
  for (size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<float>(i % 2);
    scores[i] = labels[i] + noise(rng);
  }
  CHECK(roc_auc(scores, labels) == Approx(0.5 * std::erfc(-0.5)).margin(0.002));
}

TEST_CASE("log loss from logits matches the direct formula and is stable", "[metrics]") {
  const std::vector<float> logits = test::random_vector(1000, 5, -8.0, 8.0);
  const std::vector<float> labels = test::random_vector(1000, 6, 0.0, 1.0);  // soft labels too
  long double direct = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const long double p = 1.0L / (1.0L + std::exp(-static_cast<long double>(logits[i])));
    direct -= labels[i] * std::log(p) + (1.0L - labels[i]) * std::log(1.0L - p);
  }
  CHECK(log_loss_sum(logits.data(), labels.data(), logits.size()) ==
        Approx(static_cast<double>(direct)).epsilon(1e-12));
  CHECK(mean_log_loss(logits, labels) == Approx(static_cast<double>(direct / 1000)).epsilon(1e-12));

  // Large |logit|: exact values where the naive formula overflows or loses everything.
  const std::vector<float> big = {100.0f, -100.0f, 100.0f, -1000.0f, 0.0f};
  const std::vector<float> y = {0.0f, 1.0f, 1.0f, 0.0f, 1.0f};
  const double expected[] = {100.0, 100.0, std::exp(-100.0), std::exp(-1000.0), std::log(2.0)};
  for (size_t i = 0; i < big.size(); ++i) {
    INFO("logit " << big[i] << ", label " << y[i]);
    const double got = log_loss_sum(&big[i], &y[i], 1);
    CHECK(std::isfinite(got));
    CHECK(got == Approx(expected[i]).epsilon(1e-12).margin(1e-300));
  }
  CHECK(std::isnan(mean_log_loss(std::vector<float>{}, std::vector<float>{})));
  CHECK_THROWS_WITH(mean_log_loss({1.0f}, {1.0f, 0.0f}), Contains("1 predictions but 2 labels"));
}

TEST_CASE("log loss from probabilities clamps and matches the formula", "[metrics]") {
  const std::vector<float> p = {0.2f, 0.9f, 0.5f, 0.0f, 1.0f};
  const std::vector<float> y = {0.0f, 1.0f, 1.0f, 0.0f, 0.0f};
  const double expected =
      (-std::log(0.8) - std::log(0.9) - std::log(0.5) - std::log1p(-1e-7) - std::log(1e-7)) / 5.0;
  CHECK(mean_log_loss_from_probs(p, y) == Approx(expected).epsilon(1e-6));
  CHECK(std::isnan(mean_log_loss_from_probs({}, {})));
}

TEST_CASE("binary_metrics: calibration and normalized entropy by their definitions",
          "[train][metrics]") {
  const std::vector<float> p = {0.1f, 0.4f, 0.35f, 0.8f, 0.2f, 0.6f};
  const std::vector<float> y = {0, 0, 1, 1, 0, 1};
  const auto m = binary_metrics(p, y);
  CHECK(m.samples == 6);
  CHECK(m.auc == roc_auc(p, y));
  CHECK(m.logloss == mean_log_loss_from_probs(p, y));
  const double mean_p = (0.1 + 0.4 + 0.35 + 0.8 + 0.2 + 0.6) / 6, ctr = 0.5;
  CHECK(m.mean_prediction == Approx(mean_p));
  CHECK(m.observed_ctr == ctr);
  CHECK(m.calibration == Approx(mean_p / ctr));
  // Entropy of the base rate 0.5 is log 2.
  CHECK(m.normalized_entropy == Approx(m.logloss / std::log(2.0)));
  // Predicting the base rate everywhere has NE exactly 1 (up to the float of 0.5).
  const auto base = binary_metrics(std::vector<float>(6, 0.5f), y);
  CHECK(base.normalized_entropy == Approx(1.0));
  CHECK(base.calibration == Approx(1.0));
  // One class only: AUC, NE undefined; no positives: calibration undefined.
  const auto negatives = binary_metrics({0.2f, 0.3f}, {0, 0});
  CHECK(std::isnan(negatives.auc));
  CHECK(std::isnan(negatives.normalized_entropy));
  CHECK(std::isnan(negatives.calibration));
  const auto none = binary_metrics({}, {});
  CHECK(none.samples == 0);
  CHECK(std::isnan(none.logloss));
  CHECK_THROWS_WITH(binary_metrics({0.5f}, {}), Contains("1 predictions but 0 labels"));
}

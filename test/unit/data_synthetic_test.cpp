#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/schema.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/train/metrics.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

// The Batch::sparse slot of a named generator column, found through the schema.
int64_t slot(const SyntheticGenerator& gen, const std::string& name) {
  const int64_t column = gen.schema().find(name);
  REQUIRE(column >= 0);
  const int64_t s = gen.schema().sparse_slot(column);
  REQUIRE(s >= 0);
  return s;
}

// History items of sample b that share the target item's category, counted from the batch.
int64_t category_matches(const SyntheticGenerator& gen, const Batch& batch, int64_t b) {
  const uint64_t target_category = test::ids_of(batch.sparse[slot(gen, "item_cat")], b).at(0);
  const auto cats = test::ids_of(batch.sparse[slot(gen, "hist_cats")], b);
  return std::count(cats.begin(), cats.end(), target_category);
}

SyntheticConfig demo_with_seed(uint64_t seed) {
  SyntheticConfig c = SyntheticConfig::demo();
  c.seed = seed;
  return c;
}

}  // namespace

TEST_CASE("synthetic schema has the documented columns", "[data][synthetic]") {
  const SyntheticGenerator gen(SyntheticConfig::demo());
  std::vector<std::string> names;
  for (const Column& c : gen.schema().columns()) names.push_back(c.name);
  CHECK(names == std::vector<std::string>{"label", "dense", "user", "item", "item_cat",
                                          "hist_items", "hist_cats", "ctx_0", "ctx_1", "ctx_2",
                                          "ctx_3"});
  CHECK(gen.schema().num_dense() == 8);
  CHECK(gen.schema().columns()[5].kind == ColumnKind::kSequence);
  CHECK(gen.schema().columns()[5].max_len == 20);
  CHECK(gen.schema().columns()[6].kind == ColumnKind::kSequence);
  CHECK(slot(gen, "user") == 0);
  CHECK(slot(gen, "hist_items") == 3);
  CHECK(slot(gen, "ctx_3") == 8);
}

TEST_CASE("synthetic samples depend only on (seed, index): any split is bitwise identical",
          "[data][synthetic]") {
  const SyntheticGenerator gen(demo_with_seed(5));
  std::vector<float> prob_whole;
  const Batch whole = gen.generate(0, 100, &prob_whole);
  CHECK(whole.sample_ids.front() == 0);
  CHECK(whole.sample_ids.back() == 99);

  for (const std::vector<int64_t>& cuts :
       {std::vector<int64_t>{0, 50, 100}, std::vector<int64_t>{0, 1, 2, 37, 99, 100},
        std::vector<int64_t>{0, 0, 100}}) {
    Batch joined;
    std::vector<float> prob_joined;
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      std::vector<float> p;
      test::append_batch(joined, gen.generate(cuts[k], cuts[k + 1] - cuts[k], &p));
      prob_joined.insert(prob_joined.end(), p.begin(), p.end());
    }
    test::require_same_batch(joined, whole, "split generation");
    test::require_bitwise_equal(prob_joined, prob_whole, "split true_prob");
  }
  // A second generator with the same config reproduces the samples; a window from the middle
  // matches the same samples of the whole.
  const SyntheticGenerator again(demo_with_seed(5));
  test::require_same_batch(again.generate(0, 100), whole, "second generator");
  Batch window = again.generate(40, 20);
  Batch expected;
  test::append_batch(expected, gen.generate(40, 20));
  test::require_same_batch(window, expected, "window");
  CHECK(window.sample_ids.front() == 40);

  // Another seed gives another world and other samples.
  const Batch other = SyntheticGenerator(demo_with_seed(6)).generate(0, 100);
  CHECK(other.sparse[slot(gen, "item")].keys != whole.sparse[slot(gen, "item")].keys);
  CHECK(other.dense != whole.dense);
}

TEST_CASE("synthetic batches are well formed and consistent with the world", "[data][synthetic]") {
  const SyntheticConfig c = demo_with_seed(3);
  const SyntheticGenerator gen(c);
  const int64_t n = 5000;
  std::vector<float> prob;
  const Batch b = gen.generate(1000, n, &prob);
  REQUIRE_NOTHROW(check_batch(gen.schema(), b));
  REQUIRE(prob.size() == static_cast<size_t>(n));

  const auto& user = b.sparse[slot(gen, "user")];
  const auto& item = b.sparse[slot(gen, "item")];
  const auto& item_cat = b.sparse[slot(gen, "item_cat")];
  const auto& hist_items = b.sparse[slot(gen, "hist_items")];
  const auto& hist_cats = b.sparse[slot(gen, "hist_cats")];
  double length_sum = 0;
  int64_t empty_histories = 0;
  std::vector<int64_t> length_count(c.max_history + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    CHECK(b.sample_ids[i] == static_cast<uint64_t>(1000 + i));
    CHECK((b.labels[i] == 0.0f || b.labels[i] == 1.0f));
    CHECK((prob[i] > 0.0f && prob[i] < 1.0f));
    // One id per single-valued column, inside its vocabulary.
    REQUIRE(test::ids_of(user, i).size() == 1);
    REQUIRE(test::ids_of(item, i).size() == 1);
    CHECK(test::ids_of(user, i)[0] < static_cast<uint64_t>(c.num_users));
    const uint64_t target = test::ids_of(item, i)[0];
    REQUIRE(target < static_cast<uint64_t>(c.num_items));
    CHECK(test::ids_of(item_cat, i) == std::vector<uint64_t>{static_cast<uint64_t>(
                                           gen.item_category(static_cast<int64_t>(target)))});
    for (int64_t f = 0; f < c.num_context_fields; ++f) {
      const auto ctx = test::ids_of(b.sparse[slot(gen, "ctx_" + std::to_string(f))], i);
      REQUIRE(ctx.size() == 1);
      CHECK(ctx[0] < static_cast<uint64_t>(c.context_vocab));
    }
    // History: length within bounds, categories aligned with the items.
    const auto items = test::ids_of(hist_items, i);
    const auto cats = test::ids_of(hist_cats, i);
    REQUIRE(items.size() == cats.size());
    const auto len = static_cast<int64_t>(items.size());
    CHECK(len >= c.min_history);
    CHECK(len <= c.max_history);
    ++length_count[len];
    length_sum += static_cast<double>(len);
    empty_histories += len == 0;
    for (size_t j = 0; j < items.size(); ++j) {
      REQUIRE(items[j] < static_cast<uint64_t>(c.num_items));
      CHECK(cats[j] == static_cast<uint64_t>(gen.item_category(static_cast<int64_t>(items[j]))));
    }
  }
  // Histories are drawn per sample: long ones almost never repeat.
  std::set<std::vector<uint64_t>> distinct;
  int64_t long_histories = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto items = test::ids_of(hist_items, i);
    if (items.size() < 5) continue;
    ++long_histories;
    distinct.insert(items);
  }
  CHECK(static_cast<double>(distinct.size()) > 0.99 * static_cast<double>(long_histories));
  // Length uniform in [0, 20]: mean 10, every length present.
  CHECK(std::abs(length_sum / n - 10.0) < 0.3);
  CHECK(empty_histories > 0);
  for (int64_t len = c.min_history; len <= c.max_history; ++len) CHECK(length_count[len] > 0);

  // Dense features: standardised (mean 0, variance 1), bounded by +-2*sqrt(3).
  double sum = 0, sum2 = 0;
  for (const float x : b.dense) {
    CHECK(std::abs(x) <= 3.4642f);
    sum += x;
    sum2 += static_cast<double>(x) * x;
  }
  const double m = static_cast<double>(b.dense.size());
  CHECK(std::abs(sum / m) < 0.03);
  CHECK(std::abs(sum2 / m - 1.0) < 0.05);
}

TEST_CASE("synthetic demo data has the documented CTR and oracle AUC", "[data][synthetic]") {
  // docs/data.md: demo CTR in [0.18, 0.28], oracle AUC in [0.77, 0.83], on 50k samples.
  for (const uint64_t seed : {1, 2, 3}) {
    INFO("seed " << seed);
    const SyntheticGenerator gen(demo_with_seed(seed));
    std::vector<float> prob;
    const Batch b = gen.generate(0, 50000, &prob);
    double positives = 0, mean_prob = 0;
    for (int64_t i = 0; i < b.size; ++i) {
      positives += b.labels[i];
      mean_prob += prob[i];
    }
    const double ctr = positives / b.size;
    CHECK(ctr >= 0.18);
    CHECK(ctr <= 0.28);
    CHECK(std::abs(mean_prob / b.size - ctr) < 0.01);  // labels follow the true probabilities
    const double auc = train::roc_auc(prob, b.labels);
    CHECK(auc >= 0.77);
    CHECK(auc <= 0.83);
  }
}

TEST_CASE("synthetic labels are calibrated to the true probabilities", "[data][synthetic]") {
  const SyntheticGenerator gen(demo_with_seed(4));
  std::vector<float> prob;
  const Batch b = gen.generate(0, 100000, &prob);
  // Bucket by true probability; in each bucket the click rate matches the mean probability.
  const int buckets = 5;
  std::vector<double> clicks(buckets, 0), probs(buckets, 0), count(buckets, 0);
  for (int64_t i = 0; i < b.size; ++i) {
    const int k = std::min(buckets - 1, static_cast<int>(prob[i] * buckets));
    clicks[k] += b.labels[i];
    probs[k] += prob[i];
    count[k] += 1;
  }
  for (int k = 0; k < buckets; ++k) {
    INFO("bucket " << k << " with " << count[k] << " samples");
    if (count[k] < 2000) continue;
    const double rate = clicks[k] / count[k], expected = probs[k] / count[k];
    // 4 standard errors of a binomial rate.
    CHECK(std::abs(rate - expected) < 4.0 * std::sqrt(expected * (1 - expected) / count[k]));
  }
}

TEST_CASE("the match term raises CTR when the history holds the target's category",
          "[data][synthetic]") {
  auto ctr_gap = [](const SyntheticConfig& c) {
    const SyntheticGenerator gen(c);
    const Batch b = gen.generate(0, 50000);
    double clicks[2] = {0, 0}, n[2] = {0, 0};
    for (int64_t i = 0; i < b.size; ++i) {
      const int matched = category_matches(gen, b, i) > 0;
      clicks[matched] += b.labels[i];
      n[matched] += 1;
    }
    REQUIRE(n[0] > 5000);
    REQUIRE(n[1] > 5000);
    return clicks[1] / n[1] - clicks[0] / n[0];
  };
  SyntheticConfig with = demo_with_seed(7);
  SyntheticConfig without = with;
  without.w_match = 0.0;
  without.w_repeat = 0.0;
  const double gap_with = ctr_gap(with), gap_without = ctr_gap(without);
  INFO("CTR gap with the match term " << gap_with << ", without " << gap_without);
  CHECK(gap_with > 0.15);
  CHECK(std::abs(gap_without) < 0.02);
}

TEST_CASE("logit_terms agree with the batch and the documented formula", "[data][synthetic]") {
  const SyntheticConfig c = demo_with_seed(9);
  const SyntheticGenerator gen(c);
  std::vector<float> prob;
  const Batch b = gen.generate(0, 3000, &prob);
  int64_t empty = 0, matched = 0;
  for (int64_t i = 0; i < b.size; ++i) {
    const LogitTerms t = gen.logit_terms(i);
    const int64_t n_cat = category_matches(gen, b, i);
    const uint64_t target = test::ids_of(b.sparse[slot(gen, "item")], i)[0];
    const auto items = test::ids_of(b.sparse[slot(gen, "hist_items")], i);
    const int64_t n_item = std::count(items.begin(), items.end(), target);
    REQUIRE(t.category_matches == n_cat);
    REQUIRE(t.item_matches == n_item);
    CHECK(t.match == Approx(c.w_match * std::log(1.0 + n_cat)).margin(1e-12));
    CHECK(t.repeat == Approx(c.w_repeat * std::log(1.0 + n_item)).margin(1e-12));
    CHECK(t.bias == c.bias);
    // Dense term: |v| = w_dense spread as +-w_dense/sqrt(8) over the features.
    CHECK(std::abs(t.dense) <= c.w_dense * std::sqrt(8.0) * 3.4642 + 1e-9);
    // Context term: w_ctx times a sum of 6 pair effects in [-1, 1].
    CHECK(std::abs(t.context) <= c.w_ctx * 6 + 1e-12);
    CHECK(prob[i] == Approx(1.0 / (1.0 + std::exp(-t.logit()))).epsilon(1e-6));
    if (items.empty()) {
      ++empty;
      CHECK(t.match == 0.0);
      CHECK(t.repeat == 0.0);
    }
    matched += n_cat > 0;
  }
  CHECK(empty > 0);
  CHECK(matched > 0);
}

TEST_CASE("context pairs interact: e(a, b) is not a sum of per-field effects",
          "[data][synthetic]") {
  // Two context fields: exactly one pair, so the context term is w_ctx * e(ctx_0, ctx_1).
  SyntheticConfig c = demo_with_seed(2);
  c.num_context_fields = 2;
  c.context_vocab = 10;
  c.context_zipf = 0.0;  // uniform values, so every (a, b) cell is seen
  const SyntheticGenerator gen(c);
  const Batch b = gen.generate(0, 5000);
  std::map<std::pair<uint64_t, uint64_t>, double> cell;
  for (int64_t i = 0; i < b.size; ++i) {
    const auto key =
        std::make_pair(b.sparse[slot(gen, "ctx_0")].keys[i], b.sparse[slot(gen, "ctx_1")].keys[i]);
    const double e = gen.logit_terms(i).context / c.w_ctx;
    CHECK(std::abs(e) <= 1.0);
    const auto [it, inserted] = cell.emplace(key, e);
    if (!inserted) CHECK(it->second == e);  // a fixed function of the two values
  }
  REQUIRE(cell.size() == 100);
  // An additive effect f(a) + g(b) has zero interaction contrast
  // e(a1,b1) - e(a1,b2) - e(a2,b1) + e(a2,b2); a pairwise effect does not.
  double contrast = 0, mean = 0;
  int quads = 0;
  for (uint64_t a1 = 0; a1 < 10; ++a1) {
    for (uint64_t b1 = 0; b1 < 10; ++b1) {
      mean += cell.at({a1, b1}) / 100.0;
      const uint64_t a2 = (a1 + 1) % 10, b2 = (b1 + 1) % 10;
      contrast +=
          std::abs(cell.at({a1, b1}) - cell.at({a1, b2}) - cell.at({a2, b1}) + cell.at({a2, b2}));
      ++quads;
    }
  }
  INFO("mean |interaction contrast| " << contrast / quads << ", mean effect " << mean);
  CHECK(contrast / quads > 0.5);  // about 0.9 for independent uniform effects
  CHECK(std::abs(mean) < 0.25);

  // Users follow Zipf(user_zipf): check the top user's share and the number of distinct users
  // against the formulas (expected distinct = sum_r 1 - (1 - p_r)^n).
  {
    const SyntheticConfig dc = SyntheticConfig::demo();
    const SyntheticGenerator users_gen(dc);
    const int64_t n = 20000;
    const Batch u = users_gen.generate(0, n);
    const auto& ids = u.sparse[slot(users_gen, "user")].keys;
    std::vector<double> p(static_cast<size_t>(dc.num_users));
    double total = 0;
    for (size_t r = 0; r < p.size(); ++r) total += p[r] = std::pow(r + 1.0, -dc.user_zipf);
    double expected_distinct = 0;
    for (double& x : p) {
      x /= total;
      expected_distinct += 1.0 - std::pow(1.0 - x, static_cast<double>(n));
    }
    const std::set<uint64_t> distinct(ids.begin(), ids.end());
    CHECK(std::abs(static_cast<double>(distinct.size()) - expected_distinct) < 40.0);
    const auto top = std::count(ids.begin(), ids.end(), uint64_t{0});
    CHECK(static_cast<double>(top) / n == Approx(p[0]).margin(0.004));
  }

  // Zipf check on the demo preset: the most frequent value of a Zipf(1) field over 100 values
  // has probability 1 / H_100.
  const SyntheticGenerator demo(demo_with_seed(2));
  const Batch d = demo.generate(0, 20000);
  const auto& ctx0 = d.sparse[slot(demo, "ctx_0")].keys;
  double h100 = 0;
  for (int r = 1; r <= 100; ++r) h100 += 1.0 / r;
  const auto zeros = std::count(ctx0.begin(), ctx0.end(), uint64_t{0});
  CHECK(static_cast<double>(zeros) / d.size == Approx(1.0 / h100).margin(0.01));
}

TEST_CASE("din_bench preset matches DESIGN section 6", "[data][synthetic]") {
  const SyntheticConfig c = SyntheticConfig::din_bench();
  CHECK(c.num_users == 1000000);
  CHECK(c.num_items == 1000000);
  CHECK(c.num_categories == 10000);
  CHECK(c.num_context_fields == 4);
  CHECK(c.num_context_fields * c.context_vocab == 100000);
  CHECK(c.num_dense == 8);
  CHECK(c.min_history == 1);
  CHECK(c.max_history == 50);
  const SyntheticGenerator gen(c);
  CHECK(gen.schema().columns()[gen.schema().find("hist_items")].max_len == 50);
  std::vector<float> prob;
  const Batch b = gen.generate(123456789, 2000, &prob);
  REQUIRE_NOTHROW(check_batch(gen.schema(), b));
  const auto& hist = b.sparse[slot(gen, "hist_items")];
  for (int64_t i = 0; i < b.size; ++i) {
    const int64_t len = hist.offsets[i + 1] - hist.offsets[i];
    CHECK(len >= 1);
    CHECK(len <= 50);
  }
  CHECK(SyntheticConfig::preset("din-bench").num_items == 1000000);
  CHECK(SyntheticConfig::preset("demo").num_items == SyntheticConfig::demo().num_items);
}

TEST_CASE("SyntheticConfig::validate names the field and its range", "[data][synthetic]") {
  SyntheticConfig c = SyntheticConfig::demo();
  REQUIRE_NOTHROW(c.validate());
  c.min_history = 5;
  c.max_history = 3;
  REQUIRE_THROWS_WITH(c.validate(),
                      Contains("synthetic.max_history = 3 is out of range: must be in [5, 10000]"));
  REQUIRE_THROWS_WITH(SyntheticGenerator(c), Contains("synthetic.max_history"));
  c = SyntheticConfig::demo();
  c.num_users = 0;
  REQUIRE_THROWS_WITH(c.validate(), Contains("synthetic.num_users = 0 is out of range"));
  c = SyntheticConfig::demo();
  c.target_interest_prob = 1.5;
  REQUIRE_THROWS_WITH(c.validate(),
                      Contains("synthetic.target_interest_prob = 1.5") && Contains("[0, 1]"));
  c = SyntheticConfig::demo();
  c.item_zipf = std::nan("");
  REQUIRE_THROWS_WITH(c.validate(), Contains("synthetic.item_zipf = nan"));
  c = SyntheticConfig::demo();
  c.min_history = 0;
  c.max_history = 0;
  REQUIRE_THROWS_WITH(c.validate(),
                      Contains("synthetic.max_history = 0 is out of range: must be in [1,"));
  REQUIRE_THROWS_WITH(SyntheticConfig::preset("huge"),
                      Contains("'huge' is not a synthetic data preset: use demo or din-bench"));
  const SyntheticGenerator gen(SyntheticConfig::demo());
  REQUIRE_THROWS_WITH(gen.generate(-1, 5), Contains("first_sample = -1 is out of range"));
  REQUIRE_THROWS_WITH(gen.generate(0, -5), Contains("count = -5 is out of range"));
}

TEST_CASE("small worlds and edge settings still generate valid data", "[data][synthetic]") {
  SyntheticConfig c = SyntheticConfig::demo();
  c.num_users = 1;
  c.num_items = 1;
  c.num_categories = 1;
  c.num_context_fields = 1;  // no pairs: the context term is zero
  c.context_vocab = 1;
  c.num_dense = 0;  // no dense column
  c.interests_per_user = 1;
  c.min_history = 2;
  c.max_history = 2;
  const SyntheticGenerator gen(c);
  CHECK(gen.schema().find("dense") == -1);
  CHECK(gen.schema().num_dense() == 0);
  const Batch b = gen.generate(0, 50);
  REQUIRE_NOTHROW(check_batch(gen.schema(), b));
  for (int64_t i = 0; i < b.size; ++i) {
    CHECK(test::ids_of(b.sparse[slot(gen, "hist_items")], i) == std::vector<uint64_t>{0, 0});
    const LogitTerms t = gen.logit_terms(i);
    CHECK(t.context == 0.0);
    CHECK(t.dense == 0.0);
    CHECK(t.category_matches == 2);
    CHECK(t.item_matches == 2);
  }
  CHECK(gen.generate(7, 0).size == 0);
}

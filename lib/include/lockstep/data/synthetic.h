#pragma once
// Synthetic CTR data with a known click model: a small "world" of users, items, categories and
// context values, behaviour sequences drawn from each user's interests, and clicks drawn from a
// logistic model whose true probability is returned alongside each sample. The AUC of those
// true probabilities against the drawn clicks (train::roc_auc(true_prob, labels)) is the
// oracle AUC: the ceiling any model can approach on this data.
//
// Every random draw is Philox4x32-10 keyed by (seed, stream, index), so sample i depends only
// on (config, i): any split of [0, n) into ranges generates bitwise the same samples, on any
// number of ranks or threads. docs/data.md gives the full model with formulas.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/data/schema.h"

namespace lockstep::data {

/// Parameters of the synthetic world and click model. Start from a preset and change fields;
/// validate() (called by SyntheticGenerator) checks every field.
struct SyntheticConfig {
  uint64_t seed = 1;

  // The world. Ids are 0-based: user in [0, num_users), item in [0, num_items) (item r is the
  // r-th most popular), category in [0, num_categories), ctx_f in [0, context_vocab).
  int64_t num_users = 2000;
  int64_t num_items = 10000;
  int64_t num_categories = 100;
  int64_t num_context_fields = 4;  ///< columns ctx_0 .. ctx_{k-1}, one id each
  int64_t context_vocab = 100;     ///< values per context field
  int64_t num_dense = 8;           ///< width of the "dense" column
  int64_t min_history = 0;         ///< history length is uniform in [min_history, max_history]
  int64_t max_history = 20;

  // Skew: weight of the r-th value (0-based) proportional to (r + 1)^-exponent.
  double user_zipf = 0.5;      ///< how often each user appears
  double item_zipf = 0.8;      ///< item popularity (global and within a category)
  double category_zipf = 0.5;  ///< category sizes (an item's category is drawn from this)
  double context_zipf = 1.0;   ///< each context field's values

  // Behaviour.
  int64_t interests_per_user = 3;      ///< interest categories per user (weighted)
  double history_interest_prob = 0.8;  ///< a history item comes from the user's interests
  double target_interest_prob = 0.5;   ///< the target item comes from the user's interests

  // Click model: logit = bias + user_bias + item_bias + w_match*ln(1 + n_cat)
  //   + w_repeat*ln(1 + n_item) + w_ctx * sum_{f<g} e_fg(ctx_f, ctx_g) + dense . v
  // (see docs/data.md; n_cat = history items in the target's category, n_item = history items
  // equal to the target, |v| = w_dense).
  double bias = -2.3;
  double user_bias_std = 0.5;
  double item_bias_std = 0.5;
  double w_match = 1.0;
  double w_repeat = 0.5;
  double w_ctx = 0.35;
  double w_dense = 0.5;

  /// Small vocabularies: a model learns from ~200k samples in seconds (the defaults above).
  static SyntheticConfig demo();
  /// The din-bench inputs (docs/data.md): 1M users, 1M items, 10k categories, 4 context fields of
  /// 25k values (100k in total), 8 dense, history length uniform in [1, 50].
  static SyntheticConfig din_bench();
  /// The preset called `name`: "demo" or "din-bench"; throws Error naming the choices otherwise.
  static SyntheticConfig preset(std::string_view name);
  /// Throws lockstep::Error naming the first field out of range and its allowed range, e.g.
  /// "synthetic.max_history = 3 is out of range: must be in [5, 10000]".
  void validate() const;
};

/// The parts of one sample's true logit (for tests, docs and debugging).
struct LogitTerms {
  double bias = 0, user = 0, item = 0, match = 0, repeat = 0, context = 0, dense = 0;
  int64_t category_matches = 0;  ///< n_cat: history items in the target's category
  int64_t item_matches = 0;      ///< n_item: history items equal to the target
  double logit() const { return bias + user + item + match + repeat + context + dense; }
};

/// Generates samples of the synthetic world. Construction validates the config and builds
/// popularity tables (O(num_users + num_items + num_categories + context_vocab) memory, about
/// 45 MB for din_bench); generation is then pure: const, thread-safe, and allocation-free
/// except for the output. Copies share the tables.
class SyntheticGenerator {
 public:
  explicit SyntheticGenerator(SyntheticConfig config);

  const SyntheticConfig& config() const { return config_; }
  /// label, dense (dim num_dense; omitted when 0), user, item, item_cat, hist_items
  /// (sequence), hist_cats (sequence, hist_cats[j] = category of hist_items[j]),
  /// ctx_0 .. ctx_{k-1}. Batch::sparse slots follow this order: user = 0, item = 1, ...
  const Schema& schema() const { return schema_; }

  /// Samples [first_sample, first_sample + count), with sample_ids = their indices. Sample i
  /// depends only on (config, i). When `true_prob` is given it receives sigmoid(true logit)
  /// per sample (resized to count).
  Batch generate(int64_t first_sample, int64_t count,
                 std::vector<float>* true_prob = nullptr) const;

  /// The terms of sample i's true logit, recomputed from scratch.
  LogitTerms logit_terms(int64_t sample) const;

  /// The category of an item (fixed by the seed).
  int64_t item_category(int64_t item) const;

 private:
  struct Tables;
  struct Sample;
  void draw(int64_t index, Sample& s) const;

  SyntheticConfig config_;
  Schema schema_;
  std::shared_ptr<const Tables> tables_;
};

}  // namespace lockstep::data

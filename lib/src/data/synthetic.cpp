#include "lockstep/data/synthetic.h"

#include <algorithm>
#include <cmath>

#include "lockstep/core/error.h"
#include "lockstep/core/philox.h"

namespace lockstep::data {

namespace {

// Philox streams: one per kind of draw, so draws of different kinds never share counters.
// Every draw uses the counter (index low, index high, sub, stream) under the key (seed low,
// seed high).
enum Stream : uint32_t {
  kItemCategory = 1,  // index = item
  kUserInterest,      // index = user, sub = interest k
  kUserBias,          // index = user
  kItemBias,          // index = item
  kSample,            // index = sample, sub 0/1
  kHistory,           // index = sample, sub = position j
  kContext,           // index = sample, sub = field f
  kContextPair,       // counter = (value a, value b, pair index): e_fg(a, b)
  kDense,             // index = sample, sub = feature j
  kDenseWeight,       // index = feature j
};

// 2^-32: maps a 32-bit word to [0, 1).
constexpr double kTwoToMinus32 = 1.0 / 4294967296.0;

double unit(uint32_t word) { return static_cast<double>(word) * kTwoToMinus32; }

// Uniform integer in [0, n) for n <= 2^32 (multiply-shift; bias below 2^-32 * n).
int64_t below(uint32_t word, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n)) >> 32);
}

// Irwin–Hall of four uniforms, standardised: mean 0, variance 1, support [-2*sqrt(3), 2*sqrt(3)].
// Close enough to N(0, 1) for features and biases, and free of transcendental functions.
double standard_normalish(const Philox4x32& r) {
  const double sum = unit(r.v[0]) + unit(r.v[1]) + unit(r.v[2]) + unit(r.v[3]);
  return (sum - 2.0) * 1.7320508075688772;  // sqrt(12 / 4)
}

// Index of the first element of the sorted range [first, first + n) greater than u, or n: a
// branch-free std::upper_bound (the comparisons are unpredictable, so a conditional move beats
// a branch; this is most of the generator's time).
// `cdf_of` reads the CDF value of an element.
template <class T, class CdfOf>
int64_t upper_bound_index(const T* first, int64_t n, double u, CdfOf cdf_of) {
  const T* base = first;
  while (n > 1) {
    const int64_t half = n / 2;
    base = cdf_of(base[half]) <= u ? base + half : base;
    n -= half;
  }
  return (base - first) + (cdf_of(*base) <= u);
}

int64_t upper_bound_index(const double* first, int64_t n, double u) {
  return upper_bound_index(first, n, u, [](double x) { return x; });
}

// Inverse-CDF sampling of a Zipf-like distribution over [0, n): weight(r) = (r + 1)^-s.
// sample(word) returns the first r with cdf[r] > word * 2^-32 (the plain inverse CDF). A guide
// table (Chen & Asau's cutpoint method) narrows the binary search to the entries of one of
// 2^bits equal slices of [0, 1): for million-entry tables this turns ~20 cache misses per draw
// into ~2. Slices are powers of two, so the slice of a word is exact (word >> (32 - bits)) and
// the result is identical to a binary search over the whole table.
class ZipfTable {
 public:
  ZipfTable() = default;
  ZipfTable(int64_t n, double exponent) : cdf_(static_cast<size_t>(n)) {
    double total = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      total += std::pow(static_cast<double>(r + 1), -exponent);
      cdf_[r] = total;
    }
    for (double& c : cdf_) c /= total;
    cdf_.back() = 1.0;
    bits_ = 0;
    while (bits_ < 24 && (int64_t{1} << bits_) < n) ++bits_;
    const int64_t slices = int64_t{1} << bits_;
    guide_.resize(static_cast<size_t>(slices + 1));
    for (int64_t k = 0; k <= slices; ++k) {
      const double start = std::ldexp(static_cast<double>(k), -bits_);  // exact
      guide_[k] = static_cast<int32_t>(std::min(n - 1, upper_bound_index(cdf_.data(), n, start)));
    }
  }
  int64_t sample(uint32_t word) const {
    const uint32_t slice = bits_ == 0 ? 0 : word >> (32 - bits_);
    const int64_t lo = guide_[slice], hi = guide_[slice + 1];
    return lo + upper_bound_index(cdf_.data() + lo, hi - lo + 1, unit(word));
  }

 private:
  std::vector<double> cdf_;     // inclusive prefix sums / total; back() == 1 exactly
  std::vector<int32_t> guide_;  // (2^bits + 1): first r with cdf[r] > k * 2^-bits, at most n-1
  int bits_ = 0;
};

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

}  // namespace

struct SyntheticGenerator::Tables {
  ZipfTable users, items, categories, context;
  std::vector<int32_t> item_category;  // (num_items)
  // Items grouped by category, most popular first: category c owns
  // by_category[category_begin[c] .. category_begin[c+1]), each with its within-category CDF
  // (the last entry of each non-empty range has cdf == 1 exactly). CDF and item sit side by
  // side so that the entry a search ends on is already in cache.
  std::vector<int64_t> category_begin;  // (num_categories + 1)
  struct CategoryEntry {
    double cdf;
    int64_t item;
  };
  std::vector<CategoryEntry> by_category;        // (num_items)
  std::vector<double> dense_weight;              // (num_dense): v_j = +-w_dense / sqrt(num_dense)
  std::vector<int32_t> pair_first, pair_second;  // context field pairs f < g

  // The first item of category c whose within-category CDF exceeds u. Items are most popular
  // first, so most draws land near the start of the range: a galloping search (probe 1, 3, 7,
  // ... entries in, then bisect the last gap) touches fewer cache lines than bisecting the
  // whole range, and returns the same item.
  int64_t sample_in_category(int64_t c, double u) const {
    const int64_t first = category_begin[c], n = category_begin[c + 1] - first;
    LOCKSTEP_ASSERT(n > 0);
    const CategoryEntry* entries = by_category.data() + first;
    int64_t lo = 0, step = 1;  // the answer is >= lo
    while (lo + step < n && entries[lo + step - 1].cdf <= u) {
      lo += step;
      step *= 2;
    }
    const int64_t len = std::min(step, n - lo);
    const int64_t k =
        lo + upper_bound_index(entries + lo, len, u, [](const CategoryEntry& e) { return e.cdf; });
    return entries[k].item;
  }
};

struct SyntheticGenerator::Sample {
  int64_t user = 0, item = 0, category = 0;
  std::vector<int64_t> hist_items, hist_cats, context;
  std::vector<float> dense;
  LogitTerms terms;
  double prob = 0;
  bool click = false;
};

SyntheticConfig SyntheticConfig::demo() { return SyntheticConfig{}; }

SyntheticConfig SyntheticConfig::din_bench() {
  SyntheticConfig c;
  c.num_users = 1000000;
  c.num_items = 1000000;
  c.num_categories = 10000;
  c.num_context_fields = 4;
  c.context_vocab = 25000;
  c.num_dense = 8;
  c.min_history = 1;
  c.max_history = 50;
  return c;
}

SyntheticConfig SyntheticConfig::preset(std::string_view name) {
  if (name == "demo") return demo();
  if (name == "din-bench") return din_bench();
  throw Error(
      fmt::format("preset '{}' is not a synthetic data preset: use demo or din-bench", name));
}

void SyntheticConfig::validate() const {
  check_range("synthetic.num_users", num_users, 1, 100000000);
  check_range("synthetic.num_items", num_items, 1, 100000000);
  check_range("synthetic.num_categories", num_categories, 1, 10000000);
  check_range("synthetic.num_context_fields", num_context_fields, 0, 64);
  check_range("synthetic.context_vocab", context_vocab, 1, 100000000);
  check_range("synthetic.num_dense", num_dense, 0, kMaxDenseDim);
  check_range("synthetic.min_history", min_history, 0, 10000);
  check_range("synthetic.max_history", max_history, std::max<int64_t>(min_history, 1), 10000);
  check_range("synthetic.user_zipf", user_zipf, 0.0, 4.0);
  check_range("synthetic.item_zipf", item_zipf, 0.0, 4.0);
  check_range("synthetic.category_zipf", category_zipf, 0.0, 4.0);
  check_range("synthetic.context_zipf", context_zipf, 0.0, 4.0);
  check_range("synthetic.interests_per_user", interests_per_user, 1, 64);
  check_range("synthetic.history_interest_prob", history_interest_prob, 0.0, 1.0);
  check_range("synthetic.target_interest_prob", target_interest_prob, 0.0, 1.0);
  check_range("synthetic.bias", bias, -20.0, 20.0);
  check_range("synthetic.user_bias_std", user_bias_std, 0.0, 10.0);
  check_range("synthetic.item_bias_std", item_bias_std, 0.0, 10.0);
  check_range("synthetic.w_match", w_match, -20.0, 20.0);
  check_range("synthetic.w_repeat", w_repeat, -20.0, 20.0);
  check_range("synthetic.w_ctx", w_ctx, -20.0, 20.0);
  check_range("synthetic.w_dense", w_dense, -20.0, 20.0);
}

namespace {

SyntheticConfig validated(SyntheticConfig c) {
  c.validate();
  return c;
}

Schema make_schema(const SyntheticConfig& c) {
  std::vector<Column> columns = {Column::label("label")};
  if (c.num_dense > 0) columns.push_back(Column::dense("dense", c.num_dense));
  columns.push_back(Column::sparse("user"));
  columns.push_back(Column::sparse("item"));
  columns.push_back(Column::sparse("item_cat"));
  columns.push_back(Column::sequence("hist_items", c.max_history));
  columns.push_back(Column::sequence("hist_cats", c.max_history));
  for (int64_t f = 0; f < c.num_context_fields; ++f)
    columns.push_back(Column::sparse(fmt::format("ctx_{}", f)));
  return Schema(std::move(columns));
}

}  // namespace

SyntheticGenerator::SyntheticGenerator(SyntheticConfig config)
    : config_(validated(std::move(config))), schema_(make_schema(config_)) {
  const SyntheticConfig& c = config_;
  const uint64_t seed = c.seed;
  auto t = std::make_shared<Tables>();
  t->users = ZipfTable(c.num_users, c.user_zipf);
  t->items = ZipfTable(c.num_items, c.item_zipf);
  t->categories = ZipfTable(c.num_categories, c.category_zipf);
  t->context = ZipfTable(c.context_vocab, c.context_zipf);

  t->item_category.resize(static_cast<size_t>(c.num_items));
  t->category_begin.assign(static_cast<size_t>(c.num_categories + 1), 0);
  for (int64_t item = 0; item < c.num_items; ++item) {
    const auto r = philox4x32_10(static_cast<uint32_t>(item), static_cast<uint32_t>(item >> 32), 0,
                                 kItemCategory, static_cast<uint32_t>(seed),
                                 static_cast<uint32_t>(seed >> 32));
    const auto category = static_cast<int32_t>(t->categories.sample(r.v[0]));
    t->item_category[item] = category;
    ++t->category_begin[category + 1];
  }
  for (int64_t k = 0; k < c.num_categories; ++k) t->category_begin[k + 1] += t->category_begin[k];
  // Counting sort by category; items go in rank order, so each group is most popular first.
  t->by_category.resize(static_cast<size_t>(c.num_items));
  std::vector<int64_t> fill(t->category_begin.begin(), t->category_begin.end() - 1);
  for (int64_t item = 0; item < c.num_items; ++item) {
    const int64_t pos = fill[t->item_category[item]]++;
    t->by_category[pos] = {std::pow(static_cast<double>(item + 1), -c.item_zipf), item};
  }
  for (int64_t k = 0; k < c.num_categories; ++k) {
    const int64_t lo = t->category_begin[k], hi = t->category_begin[k + 1];
    if (lo == hi) continue;
    double total = 0.0;
    for (int64_t p = lo; p < hi; ++p) {
      total += t->by_category[p].cdf;
      t->by_category[p].cdf = total;
    }
    for (int64_t p = lo; p < hi; ++p) t->by_category[p].cdf /= total;
    t->by_category[hi - 1].cdf = 1.0;
  }

  t->dense_weight.resize(static_cast<size_t>(c.num_dense));
  for (int64_t j = 0; j < c.num_dense; ++j) {
    const uint32_t word =
        philox4x32_10(static_cast<uint32_t>(j), 0, 0, kDenseWeight, static_cast<uint32_t>(seed),
                      static_cast<uint32_t>(seed >> 32))
            .v[0];
    const double sign = (word & 1u) != 0 ? 1.0 : -1.0;
    t->dense_weight[j] = sign * c.w_dense / std::sqrt(static_cast<double>(c.num_dense));
  }
  for (int32_t f = 0; f < c.num_context_fields; ++f) {
    for (int32_t g = f + 1; g < c.num_context_fields; ++g) {
      t->pair_first.push_back(f);
      t->pair_second.push_back(g);
    }
  }
  tables_ = std::move(t);
}

int64_t SyntheticGenerator::item_category(int64_t item) const {
  check_range("item", item, 0, config_.num_items - 1);
  return tables_->item_category[item];
}

void SyntheticGenerator::draw(int64_t index, Sample& s) const {
  const SyntheticConfig& c = config_;
  const Tables& t = *tables_;
  const auto k0 = static_cast<uint32_t>(c.seed), k1 = static_cast<uint32_t>(c.seed >> 32);
  const auto idx = static_cast<uint64_t>(index);
  auto philox = [&](uint32_t stream, uint64_t i, uint32_t sub) {
    return philox4x32_10(static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), sub, stream, k0,
                         k1);
  };

  const Philox4x32 r0 = philox(kSample, idx, 0), r1 = philox(kSample, idx, 1);
  s.user = t.users.sample(r0.v[0]);
  const int64_t length = c.min_history + below(r0.v[1], c.max_history - c.min_history + 1);

  // The user's interests: categories of items drawn by global popularity, so popular
  // categories are common interests; weights uniform in [0.5, 1.5), normalised.
  int64_t interest[64];
  double interest_cdf[64];
  double total = 0.0;
  for (int64_t k = 0; k < c.interests_per_user; ++k) {
    const Philox4x32 r =
        philox(kUserInterest, static_cast<uint64_t>(s.user), static_cast<uint32_t>(k));
    interest[k] = t.item_category[t.items.sample(r.v[0])];
    total += 0.5 + unit(r.v[1]);
    interest_cdf[k] = total;
  }
  auto pick_interest = [&](double u) {
    const double x = u * total;
    int64_t k = 0;
    while (k + 1 < c.interests_per_user && interest_cdf[k] <= x) ++k;
    return interest[k];
  };
  // One item: from an interest category with probability p, else by global popularity.
  // Sets (item, category); the category is known without a lookup on the interest path.
  auto pick_item = [&](double coin, double p, double u_interest, uint32_t item_word, int64_t& item,
                       int64_t& category) {
    if (coin < p) {
      category = pick_interest(u_interest);
      item = t.sample_in_category(category, unit(item_word));
    } else {
      item = t.items.sample(item_word);
      category = t.item_category[item];
    }
  };

  pick_item(unit(r0.v[2]), c.target_interest_prob, unit(r0.v[3]), r1.v[0], s.item, s.category);

  s.hist_items.resize(static_cast<size_t>(length));
  s.hist_cats.resize(static_cast<size_t>(length));
  int64_t category_matches = 0, item_matches = 0;
  for (int64_t j = 0; j < length; ++j) {
    const Philox4x32 r = philox(kHistory, idx, static_cast<uint32_t>(j));
    int64_t item = 0, category = 0;
    pick_item(unit(r.v[0]), c.history_interest_prob, unit(r.v[1]), r.v[2], item, category);
    s.hist_items[j] = item;
    s.hist_cats[j] = category;
    category_matches += category == s.category;
    item_matches += item == s.item;
  }

  s.context.resize(static_cast<size_t>(c.num_context_fields));
  for (int64_t f = 0; f < c.num_context_fields; ++f) {
    s.context[f] = t.context.sample(philox(kContext, idx, static_cast<uint32_t>(f)).v[0]);
  }
  // e_fg(a, b): a fixed pseudo-random value in [-1, 1) per (pair, a, b), keyed by the seed.
  double context = 0.0;
  for (size_t p = 0; p < t.pair_first.size(); ++p) {
    const auto a = static_cast<uint32_t>(s.context[t.pair_first[p]]);
    const auto b = static_cast<uint32_t>(s.context[t.pair_second[p]]);
    const Philox4x32 r = philox4x32_10(a, b, static_cast<uint32_t>(p), kContextPair, k0, k1);
    context += 2.0 * unit(r.v[0]) - 1.0;
  }

  s.dense.resize(static_cast<size_t>(c.num_dense));
  double dense = 0.0;
  for (int64_t j = 0; j < c.num_dense; ++j) {
    // The model sees floats, so the truth uses the float value too.
    s.dense[j] =
        static_cast<float>(standard_normalish(philox(kDense, idx, static_cast<uint32_t>(j))));
    dense += t.dense_weight[j] * static_cast<double>(s.dense[j]);
  }

  LogitTerms& lt = s.terms;
  lt.bias = c.bias;
  lt.user =
      c.user_bias_std * standard_normalish(philox(kUserBias, static_cast<uint64_t>(s.user), 0));
  lt.item =
      c.item_bias_std * standard_normalish(philox(kItemBias, static_cast<uint64_t>(s.item), 0));
  lt.category_matches = category_matches;
  lt.item_matches = item_matches;
  lt.match = c.w_match * std::log1p(static_cast<double>(category_matches));
  lt.repeat = c.w_repeat * std::log1p(static_cast<double>(item_matches));
  lt.context = c.w_ctx * context;
  lt.dense = dense;
  s.prob = sigmoid(lt.logit());
  s.click = unit(r1.v[1]) < s.prob;
}

Batch SyntheticGenerator::generate(int64_t first_sample, int64_t count,
                                   std::vector<float>* true_prob) const {
  check_range("first_sample", first_sample, 0, int64_t{1} << 62);
  check_range("count", count, 0, int64_t{1} << 40);
  const SyntheticConfig& c = config_;
  Batch batch = make_empty_batch(schema_);
  batch.size = count;
  batch.labels.reserve(static_cast<size_t>(count));
  batch.sample_ids.reserve(static_cast<size_t>(count));
  batch.dense.reserve(static_cast<size_t>(count * c.num_dense));
  for (SparseColumn& col : batch.sparse) col.offsets.reserve(static_cast<size_t>(count + 1));
  const int64_t mean_history = (c.min_history + c.max_history + 1) / 2;
  for (int s = 0; s < 3; ++s) batch.sparse[s].keys.reserve(static_cast<size_t>(count));
  for (int s = 3; s < 5; ++s)
    batch.sparse[s].keys.reserve(static_cast<size_t>(count * mean_history));
  if (true_prob != nullptr) true_prob->resize(static_cast<size_t>(count));

  Sample s;
  auto push = [](SparseColumn& col, int64_t key) {
    col.keys.push_back(static_cast<uint64_t>(key));
    col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
  };
  for (int64_t b = 0; b < count; ++b) {
    const int64_t index = first_sample + b;
    draw(index, s);
    batch.labels.push_back(s.click ? 1.0f : 0.0f);
    batch.sample_ids.push_back(static_cast<uint64_t>(index));
    batch.dense.insert(batch.dense.end(), s.dense.begin(), s.dense.end());
    push(batch.sparse[0], s.user);
    push(batch.sparse[1], s.item);
    push(batch.sparse[2], s.category);
    for (int slot = 3; slot < 5; ++slot) {
      SparseColumn& col = batch.sparse[slot];
      const auto& ids = slot == 3 ? s.hist_items : s.hist_cats;
      for (const int64_t id : ids) col.keys.push_back(static_cast<uint64_t>(id));
      col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
    }
    for (int64_t f = 0; f < c.num_context_fields; ++f) push(batch.sparse[5 + f], s.context[f]);
    if (true_prob != nullptr) (*true_prob)[b] = static_cast<float>(s.prob);
  }
  return batch;
}

LogitTerms SyntheticGenerator::logit_terms(int64_t sample) const {
  check_range("sample", sample, 0, int64_t{1} << 62);
  Sample s;
  draw(sample, s);
  return s.terms;
}

}  // namespace lockstep::data

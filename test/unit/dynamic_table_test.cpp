// Dynamic embedding tables (issue 13, docs/feasign_store.md): the feasign store's rules applied
// by DynamicTable to merged keyed gradients (admission at the threshold, lr learning before
// admission, initial values and re-creation, eviction when full, shrink, resume), and a model
// reading dynamic tables (its keyed gradient against finite differences, shows and clicks per
// key, training).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "gradcheck.h"
#include "lockstep/embedding/dynamic_table.h"
#include "lockstep/embedding/feasign_init.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/nn/loss.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"
#include "data_test_util.h"
#include "lockstep/io/safetensors.h"
#include "lockstep/serving/student_model.h"
#include "lockstep/train/sparse_model.h"
#include "model_fixture.h"

using namespace lockstep;
using embedding::AccessorConfig;
using embedding::DynamicTable;
using embedding::kDynamicRecordExtra;
using Catch::Matchers::Contains;

namespace {
constexpr int64_t kDim = 4;
constexpr uint64_t kSeed = 9, kStream = 1234;
constexpr float kScale = 0.1f;

struct Rec {
  uint64_t key;
  float show, click, dlr = 0;
  float dx = 0;  // every embedx gradient element
};

nn::OptimizerConfig adagrad() {
  nn::OptimizerConfig o;
  o.kind = nn::OptimizerKind::Adagrad;
  o.lr = 0.1f;
  return o;
}

DynamicTable<float> make_table(int64_t capacity, const AccessorConfig& a = {},
                               int64_t shrink_every = 0) {
  return DynamicTable<float>(Context{}, capacity, kDim, kScale, a, shrink_every, adagrad(), kSeed, kStream);
}

/// Applies one step's merged gradient made of `recs` (sorted by key here, as the merge does).
void step(const Context& ctx, DynamicTable<float>& t, std::vector<Rec> recs, int64_t s = 1) {
  std::sort(recs.begin(), recs.end(), [](const Rec& a, const Rec& b) { return a.key < b.key; });
  const int64_t n = static_cast<int64_t>(recs.size()), w = kDim + kDynamicRecordExtra;
  embedding::SparseGrad<float> g;
  g.reserve(ctx, n, w);
  for (int64_t i = 0; i < n; ++i) {
    g.ids()[i] = recs[i].key;
    float* r = g.rows() + i * w;
    r[0] = recs[i].show;
    r[1] = recs[i].click;
    r[2] = recs[i].dlr;
    std::fill(r + kDynamicRecordExtra, r + w, recs[i].dx);
  }
  *g.count() = n;
  g.mark_ready();
  t.apply(ctx, g, 1.0f, s);
}

std::vector<float> embedx_of(const DynamicTable<float>& t, uint64_t key) {
  const int64_t slot = t.index().find(key);
  REQUIRE(slot >= 0);
  return {t.embedx() + slot * kDim, t.embedx() + (slot + 1) * kDim};
}

std::vector<float> initial_embedx(uint64_t key) {
  std::vector<float> v(kDim);
  for (int64_t d = 0; d < kDim; ++d)
    v[d] = embedding::feasign_init_value(kSeed, kStream, key, d, kScale);
  return v;
}
}  // namespace

TEST_CASE("Dynamic table: embedx is admitted at exactly the threshold; lr learns before",
          "[embedding][dynamic]") {
  Context ctx;
  auto t = make_table(8);  // Paddle's defaults: embedx at score 10 = clicks (click_coeff 1)
  step(ctx, t, {{1, 10, 10, 0.5f, 1.0f}, {2, 9, 9, 0.5f, 1.0f}});
  const int64_t s1 = t.index().find(1), s2 = t.index().find(2);
  REQUIRE(s1 >= 0);
  REQUIRE(s2 >= 0);
  CHECK(t.admitted(s1));        // score 10 >= 10
  CHECK_FALSE(t.admitted(s2));  // score 9
  CHECK(t.lr(s1) < 0.0f);       // both lr weights learned from the gradient 0.5
  CHECK(t.lr(s2) == t.lr(s1));
  // The admitting step creates embedx at its initial values (its gradient is not applied).
  CHECK(embedx_of(t, 1) == initial_embedx(1));
  CHECK(embedx_of(t, 2) == std::vector<float>(kDim, 0.0f));
  std::vector<float> rows(2 * kDim), lr(2);
  const uint64_t keys[2] = {2, 77};  // 77 is not held: zeros
  t.gather(ctx, keys, 2, rows.data(), lr.data());
  CHECK(rows == std::vector<float>(2 * kDim, 0.0f));
  CHECK(lr[0] == t.lr(s2));
  CHECK(lr[1] == 0.0f);
  // Only the first `count` keys are read (a padded batch's count is on the device): the rest
  // gather zeros, even a held, admitted key.
  const uint64_t given[3] = {2, 1, 1};
  const int64_t count = 1;
  std::vector<float> rows3(3 * kDim, -1.0f), lr3(3, -1.0f);
  t.gather(ctx, given, 3, rows3.data(), lr3.data(), &count);
  CHECK(lr3 == std::vector<float>{t.lr(s2), 0.0f, 0.0f});
  CHECK(rows3 == std::vector<float>(3 * kDim, 0.0f));

  step(ctx, t, {{2, 1, 1, 0, 1.0f}}, 2);  // key 2 reaches 10: admitted now
  CHECK(t.admitted(s2));
  CHECK(embedx_of(t, 2) == initial_embedx(2));
  step(ctx, t, {{1, 1, 0, 0, 1.0f}}, 3);  // key 1 held embedx before: it learns
  const auto e1 = embedx_of(t, 1), i1 = initial_embedx(1);
  for (int64_t d = 0; d < kDim; ++d) CHECK(e1[d] < i1[d]);
  CHECK(t.counters().inserted == 2);
  CHECK(t.counters().admitted == 2);
  CHECK(t.stats(s1).show == 11.0f);
  CHECK(t.stats(s1).click == 10.0f);
}

TEST_CASE("Dynamic table: keys 0 and 2^64 - 1 are feasigns like any other",
          "[embedding][dynamic]") {
  Context ctx;
  AccessorConfig a;
  a.embedx_threshold = 0;  // admitted at once
  auto t = make_table(4, a);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  step(ctx, t, {{0, 1, 0}, {max, 1, 1}});
  CHECK(t.size() == 2);
  CHECK(t.index().find(0) != t.index().find(max));
  CHECK(embedx_of(t, 0) == initial_embedx(0));
  CHECK(embedx_of(t, max) == initial_embedx(max));
  CHECK(embedx_of(t, 0) != embedx_of(t, max));
}

TEST_CASE("Dynamic table: when full the lowest score leaves first; a re-created feasign starts "
          "from the same values",
          "[embedding][dynamic]") {
  Context ctx;
  AccessorConfig a;
  a.embedx_threshold = 0;
  auto t = make_table(3, a);
  step(ctx, t, {{10, 5, 5}, {20, 1, 0}, {30, 3, 3}});  // scores 5, 0.1, 3
  const auto e20 = embedx_of(t, 20);
  step(ctx, t, {{40, 1, 1}}, 2);
  CHECK(t.index().find(20) < 0);  // the lowest score
  CHECK(t.index().find(10) >= 0);
  CHECK(t.index().find(30) >= 0);
  CHECK(t.index().find(40) >= 0);
  CHECK(t.counters().evicted == 1);
  // Four new keys, three held ones not in the step: all three leave, one new key is dropped.
  step(ctx, t, {{50, 1, 1}, {60, 1, 1}, {70, 1, 1}, {80, 1, 1}}, 3);
  CHECK(t.counters().evicted == 4);
  CHECK(t.counters().dropped == 1);
  CHECK(t.index().find(80) < 0);  // the last in key order
  for (uint64_t k : {50, 60, 70}) CHECK(t.index().find(k) >= 0);
  // Feasigns of the step itself are never evicted for its new ones.
  step(ctx, t, {{50, 1, 1}, {60, 1, 1}, {70, 1, 1}, {20, 1, 1}}, 4);
  CHECK(t.index().find(20) < 0);
  CHECK(t.counters().dropped == 2);
  step(ctx, t, {{20, 1, 1}}, 5);  // 20 again: evicts the lowest (50, 60, 70 tie: key 50)
  CHECK(t.index().find(50) < 0);
  CHECK(embedx_of(t, 20) == e20);  // the same initial values as the first time
  const int64_t s20 = t.index().find(20);
  CHECK(t.stats(s20).show == 1.0f);  // and fresh statistics
}

TEST_CASE("Dynamic table: shrink decays, counts unseen days and deletes (strictly below)",
          "[embedding][dynamic]") {
  Context ctx;
  SECTION("delete below the threshold, at it kept") {
    AccessorConfig a;
    a.show_click_decay_rate = 1.0f;  // no decay: the scores stay as counted
    auto t = make_table(8, a);
    step(ctx, t, {{1, 8, 0}, {2, 7, 0}});  // scores 0.8 (= delete_threshold) and 0.7
    CHECK(t.shrink(ctx) == 1);
    CHECK(t.index().find(1) >= 0);
    CHECK(t.index().find(2) < 0);
    CHECK(t.counters().deleted == 1);
  }
  SECTION("decay") {
    AccessorConfig a;
    a.show_click_decay_rate = 0.5f;
    auto t = make_table(8, a);
    step(ctx, t, {{1, 100, 40}});
    t.shrink(ctx);
    const int64_t s = t.index().find(1);
    CHECK(t.stats(s).show == 50.0f);
    CHECK(t.stats(s).click == 20.0f);
  }
  SECTION("unseen days: N kept, N + 1 deleted") {
    AccessorConfig a;
    a.delete_after_unseen_days = 2;
    a.show_click_decay_rate = 1.0f;
    auto t = make_table(8, a);
    step(ctx, t, {{1, 100, 100}, {2, 100, 100}});
    t.shrink(ctx);  // both seen: unseen_days 0
    for (int day = 1; day <= 2; ++day) {
      step(ctx, t, {{2, 1, 0}}, 1 + day);  // 2 is seen every day, 1 never again
      t.shrink(ctx);
      CHECK(t.stats(t.index().find(1)).unseen_days == day);
    }
    CHECK(t.index().find(1) >= 0);  // 2 days unseen: kept
    t.shrink(ctx);
    CHECK(t.index().find(1) < 0);  // 3 > 2: deleted
    CHECK(t.index().find(2) >= 0);
  }
  SECTION("every N updates") {
    AccessorConfig a;
    a.show_click_decay_rate = 1.0f;
    auto t = make_table(8, a, /*shrink_every=*/3);
    step(ctx, t, {{1, 1, 0}}, 1);
    step(ctx, t, {{2, 1, 0}}, 2);
    CHECK(t.counters().shrinks == 0);
    step(ctx, t, {{3, 100, 0}}, 3);
    CHECK(t.counters().shrinks == 1);
    CHECK(t.size() == 1);  // 1 and 2 scored 0.1 < 0.8
  }
}

TEST_CASE("Dynamic table: a table restored from its host tensors continues bitwise",
          "[embedding][dynamic]") {
  Context ctx;
  AccessorConfig a;
  a.embedx_threshold = 2;
  a.show_click_decay_rate = 0.9f;
  auto t = make_table(16, a, 4);
  std::mt19937 rng(5);
  const auto random_step = [&](int64_t s) {
    std::map<uint64_t, Rec> recs;
    for (int i = 0; i < 6; ++i) {
      const uint64_t k = rng() % 40;
      recs[k] = {k, static_cast<float>(1 + rng() % 3), static_cast<float>(rng() % 2),
                 static_cast<float>(rng() % 100) / 50.0f - 1.0f, 0.25f};
    }
    std::vector<Rec> v;
    for (auto& [k, r] : recs) v.push_back(r);
    return v;
  };
  for (int64_t s = 1; s <= 20; ++s) step(ctx, t, random_step(s), s);
  std::map<std::string, std::vector<float>> saved;
  t.to_host(ctx, "t", saved);
  auto u = make_table(16, a, 4);
  u.from_host(ctx, "t", saved);
  for (int64_t s = 21; s <= 40; ++s) {
    const auto recs = random_step(s);
    step(ctx, t, recs, s);
    step(ctx, u, recs, s);
  }
  std::map<std::string, std::vector<float>> a1, a2;
  t.to_host(ctx, "t", a1);
  u.to_host(ctx, "t", a2);
  CHECK(a1 == a2);
  CHECK(t.counters().evicted + t.counters().deleted > 0);  // the run exercised both

  auto bad = saved;
  std::copy(bad["t.keys"].begin(), bad["t.keys"].begin() + 2, bad["t.keys"].begin() + 2);
  auto& f = bad["t.feasign"];
  f[0] = f[7] = 1.0f;  // slots 0 and 1 held, with the same key
  CHECK_THROWS_WITH(u.from_host(ctx, "t", bad), Contains("is held by slots 0 and 1"));
  bad = saved;
  bad["t.lr"].pop_back();
  CHECK_THROWS_WITH(u.from_host(ctx, "t", bad), Contains("'t.lr' has 15 values, the table needs 16"));
  std::map<std::string, std::vector<float>> after;
  u.to_host(ctx, "t", after);
  CHECK(after == a2);  // refused inputs change nothing
}

TEST_CASE("A model with dynamic tables: the keyed gradient matches finite differences; shows "
          "and clicks are counted per key",
          "[embedding][dynamic][gradcheck]") {
  Context ctx;
  AccessorConfig a;
  a.embedx_threshold = 0.5f;  // after one step: keys with a click admitted, most others not
  auto model = test::fixture_dynamic_model<double>(ctx, a);
  const data::Batch batch = test::fixture_batch(0, 12);
  const int64_t rows = batch.size;
  const std::vector<double> labels(batch.labels.begin(), batch.labels.end());
  nn::BceWithLogits<double> bce;
  std::vector<double> dlogits(rows);
  double loss_sum = 0;
  const auto run = [&](bool backward) {
    model->zero_grad(ctx);
    const double* z = model->forward(ctx, batch, true);
    bce.forward_backward(ctx, rows, z, labels.data(), 1.0, backward ? dlogits.data() : nullptr,
                         &loss_sum);
    if (backward) model->backward(ctx, dlogits.data());
    return loss_sum;
  };
  run(true);
  model->apply_gradients(ctx, 1.0 / static_cast<double>(rows));  // creates the batch's keys
  run(true);

  // Shows and clicks: per key, its occurrences in the columns the table reads and their labels.
  const std::map<std::string, std::vector<int>> columns = {{"user", {0}}, {"item", {1, 2}}};
  int admitted = 0, not_admitted = 0;
  for (auto* t : model->tables()) {
    const auto& g = t->grad();
    REQUIRE(g.ready());
    const int64_t n = *g.count(), w = t->grad_width();
    std::map<uint64_t, std::pair<double, double>> expected;
    for (int c : columns.at(t->config().name))
      for (int64_t b = 0; b < rows; ++b)
        for (int64_t j = batch.sparse[c].offsets[b]; j < batch.sparse[c].offsets[b + 1]; ++j) {
          auto& e = expected[batch.sparse[c].keys[j]];
          e.first += 1;
          e.second += batch.labels[b];
        }
    REQUIRE(n == static_cast<int64_t>(expected.size()));
    auto it = expected.begin();
    for (int64_t u = 0; u < n; ++u, ++it) {
      INFO(t->config().name << " key " << g.ids()[u]);
      CHECK(g.ids()[u] == it->first);  // ascending keys
      CHECK(g.rows()[u * w] == it->second.first);
      CHECK(g.rows()[u * w + 1] == it->second.second);
    }
    // Finite differences: lr of every key, embedx of the admitted ones (the others read zeros).
    auto* dyn = t->dynamic_table();
    const int64_t cap = dyn->capacity(), dim = t->dim();
    std::vector<double> dlr(cap, 0.0), dx(cap * dim, 0.0);
    std::vector<int64_t> lr_idx, x_idx;
    for (int64_t u = 0; u < n; ++u) {
      const int64_t slot = dyn->index().find(g.ids()[u]);
      REQUIRE(slot >= 0);
      dlr[slot] = g.rows()[u * w + 2];
      lr_idx.push_back(slot);
      if (!dyn->admitted(slot)) {
        ++not_admitted;
        continue;
      }
      ++admitted;
      for (int64_t d = 0; d < dim; ++d) {
        dx[slot * dim + d] = g.rows()[u * w + kDynamicRecordExtra + d];
        x_idx.push_back(slot * dim + d);
      }
    }
    const auto loss = [&] { return run(false); };
    test::check_gradient(t->config().name + " lr", loss, dyn->lr_weights(), dlr.data(), cap,
                         lr_idx, 1e-6, 5e-6, 1e-3);
    test::check_gradient(t->config().name + " embedx", loss, dyn->embedx(), dx.data(), cap * dim,
                         x_idx, 1e-6, 5e-6, 1e-3);
  }
  CHECK(admitted > 0);
  CHECK(not_admitted > 0);
}

TEST_CASE("A model with dynamic tables trains; evaluation reads unknown keys as zeros",
          "[embedding][dynamic]") {
  Context ctx;
  AccessorConfig a;
  a.embedx_threshold = 2;
  auto model = test::fixture_dynamic_model(ctx, a, 150, 300);  // < 500 keys: evictions happen
  train::LocalTrainer<float> trainer(*model, ctx);
  const auto batches = test::fixture_batches(30, 32);
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 3; ++epoch)
    for (size_t i = 0; i < batches.size(); ++i) {
      const double loss = trainer.step(batches[i]);
      if (epoch == 0 && i < 5) first += loss;
      if (epoch == 2 && i >= batches.size() - 5) last += loss;
    }
  CHECK(last < first);
  const auto* user = model->tables()[0]->dynamic_table();
  CHECK(user->size() <= 150);
  CHECK(user->counters().evicted > 0);
  CHECK(user->counters().admitted > 0);
  // A batch of keys the tables have never held: the logits are those of zero embeddings and
  // lr weights, i.e. the MLP's output on [0 | dense].
  data::Batch fresh = test::fixture_batch(0, 4);
  for (auto& col : fresh.sparse)
    for (auto& k : col.keys) k += uint64_t{1} << 40;
  const float* z = model->forward(ctx, fresh, false);
  std::vector<float> logits(z, z + 4);
  for (auto& col : fresh.sparse) std::fill(col.keys.begin(), col.keys.end(), uint64_t{1} << 41);
  const float* z2 = model->forward(ctx, fresh, false);
  CHECK(std::vector<float>(z2, z2 + 4) == logits);
}

TEST_CASE("A dynamic table has slots, not hashed rows", "[embedding][dynamic]") {
  embedding::TableConfig c{"t", 10, 4, embedding::Pooling::Sum, 0.1f};
  c.kind = embedding::TableKind::Dynamic;
  embedding::EmbeddingTable<float> t(c, adagrad());
  CHECK_THROWS_WITH(t.row_of(3), Contains("table 't' is dynamic"));
}

TEST_CASE("The dual DNN with dynamic tables: the keyed gradient matches finite differences of "
          "its loss; the exported student serves the same predictions",
          "[embedding][dynamic][dual][gradcheck]") {
  Context ctx;
  embedding::AccessorConfig a;
  a.embedx_threshold = 0.5f;  // after one step: keys with a click admitted, most others not
  // The fixture's dual, smaller, with PReLU (no batch statistics: finite differences apply).
  models::DualConfig c = test::fixture_dual_config(models::DualMode::Joint, &a);
  c.cross_layers = 1;
  c.teacher_mlp = {{8, 1}, {nn::ActivationKind::PReLU}, false};
  c.student_mlp = {{4, 1}, {nn::ActivationKind::PReLU}, false};
  // Every student term reaches the tables (scale 1, all), no KD (its target, the teacher's logit,
  // is a constant for the student): the gradient is then the derivative of the whole loss.
  c.student_embedding_scale = 1.0f;
  c.student_embedding_losses = models::StudentEmbeddingLosses::All;
  c.kd_weight = 0.0f;
  models::DualDnn<double> model(c, test::fixture_columns(), 3, ctx);
  const data::Batch batch = test::fixture_batch(0, 10);
  embedding::DeviceBatch<double> staged;
  model.stage(ctx, batch, staged);
  Tensor<double> loss(ctx, {1});
  // The loss (loss_and_backward also writes the gradients: they are snapshot below first).
  const auto run = [&] {
    model.zero_grad(ctx);
    model.forward(ctx, staged, true);
    model.loss_and_backward(ctx, staged, loss.data());
    return to_host(ctx, loss)[0];
  };
  run();
  model.apply_gradients(ctx, 0.1);  // creates and admits the batch's keys
  run();
  // Snapshot the keyed gradients before finite differences overwrite them.
  struct Snap {
    std::vector<uint64_t> ids;
    std::vector<double> rows;
    int64_t width;
  };
  std::vector<Snap> snaps;
  for (auto* t : model.tables()) {
    const auto& g = t->grad();
    REQUIRE(g.ready());
    const int64_t n = *g.count(), w = t->grad_width();
    snaps.push_back({{g.ids(), g.ids() + n}, {g.rows(), g.rows() + n * w}, w});
  }
  int admitted = 0;
  for (size_t ti = 0; ti < snaps.size(); ++ti) {
    auto* t = model.tables()[ti];
    auto* dyn = t->dynamic_table();
    const int64_t cap = dyn->capacity(), dim = t->dim(), w = snaps[ti].width;
    std::vector<double> dlr(cap, 0.0), dx(cap * dim, 0.0);
    std::vector<int64_t> lr_idx, x_idx;
    for (size_t u = 0; u < snaps[ti].ids.size(); ++u) {
      const int64_t slot = dyn->index().find(snaps[ti].ids[u]);
      REQUIRE(slot >= 0);
      dlr[slot] = snaps[ti].rows[u * w + 2];
      lr_idx.push_back(slot);
      if (!dyn->admitted(slot)) continue;
      ++admitted;
      for (int64_t d = 0; d < dim; ++d) {
        dx[slot * dim + d] = snaps[ti].rows[u * w + kDynamicRecordExtra + d];
        x_idx.push_back(slot * dim + d);
      }
    }
    const auto loss_fn = [&] { return run(); };
    test::check_gradient(t->config().name + " lr", loss_fn, dyn->lr_weights(), dlr.data(), cap,
                         lr_idx, 1e-6, 5e-6, 1e-3);
    test::check_gradient(t->config().name + " embedx", loss_fn, dyn->embedx(), dx.data(),
                         cap * dim, x_idx, 1e-6, 5e-6, 1e-3);
  }
  CHECK(admitted > 0);
}

TEST_CASE("The dual DNN with dynamic tables trains on one rank; its exported student predicts "
          "what the model's student predicts",
          "[embedding][dynamic][dual]") {
  Context ctx;
  test::TempDir dir;
  embedding::AccessorConfig a;
  a.embedx_threshold = 1.0f;
  a.base_threshold = 0.0f;  // the sparse export below carries every feasign
  auto model = test::fixture_dual(ctx, models::DualMode::Joint, &a);
  train::LocalTrainer<float> trainer(*model, ctx);
  for (const auto& b : test::fixture_batches(12, 32)) trainer.step(b);
  const auto* user = model->tables()[0]->dynamic_table();
  REQUIRE(user != nullptr);
  CHECK(user->counters().admitted > 0);
  CHECK(user->counters().admitted < user->counters().inserted);  // some not admitted
  model->export_student(ctx, dir.file("student"), test::fixture_columns());
  serving::StudentModel served(dir.file("student"), ctx);
  const data::Batch batch = test::fixture_batch(2000, 16);
  const auto expected = trainer.predict_outputs(batch)[0];  // the student's probabilities
  const auto got = served.predict(batch);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expected[i]).margin(1e-6));

  // A bundle that references a sparse export instead of carrying the rows serves the same.
  train::write_sparse_model(ctx, dir.file("sparse"), train::SparseSaveKind::Base, *model, 12);
  model->export_student(ctx, dir.file("student-ref"), test::fixture_columns(),
                        dir.file("sparse"));
  CHECK_FALSE(io::read_safetensors(dir.file("student-ref") + "/embeddings.safetensors")
                  .has("user.keys"));
  serving::StudentModel referenced(dir.file("student-ref"), ctx);
  const auto got_ref = referenced.predict(batch);
  for (size_t i = 0; i < got_ref.size(); ++i) CHECK(got_ref[i] == got[i]);
  std::filesystem::remove_all(dir.file("sparse"));
  CHECK_THROWS_WITH(serving::StudentModel(dir.file("student-ref"), ctx),
                    Contains("reads its dynamic tables from the sparse export"));
}

TEST_CASE("Student-only training of a dual DNN leaves its dynamic tables untouched",
          "[embedding][dynamic][dual]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  embedding::AccessorConfig a;
  a.embedx_threshold = 0.0f;
  auto joint = test::fixture_dual(ctx, models::DualMode::Joint, &a);
  train::LocalTrainer<float> warm(*joint, ctx);
  for (const auto& b : test::fixture_batches(4, 16)) warm.step(b);
  std::map<std::string, std::vector<float>> state;
  for (auto* t : joint->tables()) state.merge(t->to_host(ctx));

  auto student_only = test::fixture_dual(ctx, models::DualMode::StudentOnly, &a);
  for (auto* t : student_only->tables()) t->from_host(ctx, state);
  train::TrainerConfig cfg;
  cfg.log_every = 0;
  cfg.epochs = 2;  // epoch ends: no shrink either
  train::Trainer trainer(*student_only, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(4, 16, 5000));  // new keys too
  trainer.fit(source);
  std::map<std::string, std::vector<float>> after;
  for (auto* t : student_only->tables()) after.merge(t->to_host(ctx));
  CHECK(after == state);
}

namespace {
/// A plain model of the feasign store's rules (docs/feasign_store.md), written apart from the
/// kernels: keys in a std::map, free slots in a std::set (the lowest first).
struct ReferenceStore {
  struct Feasign {
    int64_t slot;
    embedding::FeasignStats stats;
    bool admitted = false;
  };
  int64_t capacity;
  AccessorConfig a;
  std::map<uint64_t, Feasign> held;
  std::set<int64_t> free;
  int64_t evicted = 0, dropped = 0, deleted = 0;

  ReferenceStore(int64_t cap, const AccessorConfig& acc) : capacity(cap), a(acc) {
    for (int64_t s = 0; s < cap; ++s) free.insert(s);
  }
  float score(const Feasign& f) const {
    return embedding::show_click_score(a, f.stats.show, f.stats.click);
  }
  void apply(const std::vector<Rec>& recs) {  // recs: distinct keys, ascending
    std::vector<uint64_t> fresh;
    for (const Rec& r : recs)
      if (!held.count(r.key)) fresh.push_back(r.key);
    const auto room = static_cast<int64_t>(free.size());
    if (static_cast<int64_t>(fresh.size()) > room) {
      std::vector<std::pair<float, uint64_t>> candidates;  // (score, key): the lowest first
      for (const auto& [key, f] : held) {
        const bool in_step =
            std::any_of(recs.begin(), recs.end(), [&](const Rec& r) { return r.key == key; });
        if (!in_step) candidates.emplace_back(score(f), key);
      }
      std::sort(candidates.begin(), candidates.end());
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(fresh.size()) - room,
                                          static_cast<int64_t>(candidates.size()));
      for (int64_t i = 0; i < n; ++i) {
        free.insert(held.at(candidates[static_cast<size_t>(i)].second).slot);
        held.erase(candidates[static_cast<size_t>(i)].second);
      }
      evicted += n;
    }
    for (uint64_t key : fresh) {
      if (free.empty()) {
        ++dropped;
        continue;
      }
      held[key] = Feasign{*free.begin(), {}, false};
      free.erase(free.begin());
    }
    for (const Rec& r : recs) {
      auto it = held.find(r.key);
      if (it == held.end()) continue;
      embedding::update_stats(a, it->second.stats, r.show, r.click);
      if (!it->second.admitted && embedding::admits_embedx(a, it->second.stats))
        it->second.admitted = true;
    }
  }
  void shrink() {
    for (auto it = held.begin(); it != held.end();) {
      if (embedding::shrink(a, it->second.stats)) {
        free.insert(it->second.slot);
        it = held.erase(it);
        ++deleted;
      } else {
        ++it;
      }
    }
  }
};
}  // namespace

TEST_CASE(
    "Dynamic table: 400 random steps with evictions, drops and shrinks hold a plain model's "
    "slots, statistics and counters",
    "[embedding][dynamic]") {
  AccessorConfig a;
  a.embedx_threshold = 3;
  a.delete_threshold = 0.3f;
  a.delete_after_unseen_days = 2;
  const int64_t capacity = 64;
  auto t = make_table(capacity, a);
  ReferenceStore ref(capacity, a);
  const Context ctx;
  std::mt19937_64 rng(7);
  for (int step_no = 1; step_no <= 400; ++step_no) {
    // 1 to 90 distinct keys of 200 (some steps bring more new keys than the table holds), with
    // extreme keys now and then.
    std::map<uint64_t, Rec> by_key;
    const int n = 1 + static_cast<int>(rng() % 90);
    for (int i = 0; i < n; ++i) {
      uint64_t key = rng() % 200;
      if (key == 0) key = std::numeric_limits<uint64_t>::max();
      const float show = static_cast<float>(1 + rng() % 3);
      by_key[key] = Rec{key, show, static_cast<float>(rng() % 2) * show, 0.01f, 0.01f};
    }
    std::vector<Rec> recs;
    for (const auto& [key, r] : by_key) recs.push_back(r);
    step(ctx, t, recs, step_no);
    ref.apply(recs);
    if (step_no % 7 == 0) {
      const int64_t before = ref.deleted;
      ref.shrink();
      CHECK(t.shrink(ctx) == ref.deleted - before);
    }
    INFO("step " << step_no);
    REQUIRE(t.size() == static_cast<int64_t>(ref.held.size()));
    for (const auto& [key, f] : ref.held) {
      REQUIRE(t.index().find(key) == f.slot);
      const auto& st = t.stats(f.slot);
      REQUIRE(st.show == f.stats.show);
      REQUIRE(st.click == f.stats.click);
      REQUIRE(st.delta_score == f.stats.delta_score);
      REQUIRE(st.unseen_days == f.stats.unseen_days);
      REQUIRE(st.seen == f.stats.seen);
      REQUIRE(t.admitted(f.slot) == f.admitted);
    }
    REQUIRE(t.counters().evicted == ref.evicted);
    REQUIRE(t.counters().dropped == ref.dropped);
    REQUIRE(t.counters().deleted == ref.deleted);
  }
  CHECK(ref.evicted > 0);  // the run covered every path
  CHECK(ref.dropped > 0);
  CHECK(ref.deleted > 0);
}

// The staged batch (DeviceBatch), the built-in model presets, and the models' default loss and
// backward paths (CPU).
#include <catch2/catch.hpp>

#include <algorithm>

#include "lockstep/data/synthetic.h"
#include "lockstep/models/factory.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

TEST_CASE("DeviceBatch holds every table's rows and offsets, lengths, dense and labels",
          "[embedding][device_batch]") {
  Context ctx;
  auto model = test::fixture_din(ctx);
  const auto& emb = model->embeddings();
  const data::Batch batch = test::fixture_batch(10, 7, 6);
  embedding::DeviceBatch<float> staged;
  for (int round = 0; round < 2; ++round) {  // restaging reuses the buffer
    model->stage(ctx, batch, staged);
    REQUIRE(staged.size() == 7);
    REQUIRE(staged.num_tables() == 2);
    REQUIRE(staged.num_dense() == 3);
    // "user": one bag per sample; "item": the target bags then 4 history positions per sample.
    CHECK(staged.bags(0) == 7);
    CHECK(staged.bags(1) == 7 + 7 * 4);
    const auto& user = emb.tables()[0];
    for (int64_t b = 0; b < 7; ++b) {
      CHECK(staged.offsets(0)[b + 1] - staged.offsets(0)[b] == 1);
      CHECK(staged.ids(0)[b] == user.row_of(batch.sparse[0].keys[b]));
      const int64_t n = batch.sparse[2].offsets[b + 1] - batch.sparse[2].offsets[b];
      CHECK(staged.host_lengths()[b] == std::min<int64_t>(n, 4));
      CHECK(staged.lengths()[b] == std::min<int64_t>(n, 4));
      CHECK(staged.token_lengths()[b] == std::min<int64_t>(n, 4) + 1);
      CHECK(staged.labels()[b] == batch.labels[b]);
      for (int d = 0; d < 3; ++d) CHECK(staged.dense()[b * 3 + d] == batch.dense[b * 3 + d]);
    }
    CHECK(staged.nnz(1) == staged.offsets(1)[staged.bags(1)]);
  }
  CHECK_THROWS_WITH(staged.staged_keys(0), Contains("not staged with its keys"));  // hashed
  // A dynamic table's distinct keys (ascending) and their number are made from the staged keys;
  // its ids become positions among them, grouped by key for the backward.
  embedding::AccessorConfig a;
  auto dyn = test::fixture_dynamic_model(ctx, a);
  embedding::DeviceBatch<float> keyed;
  dyn->stage(ctx, batch, keyed);
  for (size_t t = 0; t < keyed.num_tables(); ++t) {
    const int64_t n = *keyed.staged_key_count(t), nnz = keyed.nnz(t);
    REQUIRE(n > 0);
    REQUIRE(n <= nnz);
    const uint64_t* keys = keyed.staged_keys(t);
    for (int64_t u = 1; u < n; ++u) CHECK(keys[u - 1] < keys[u]);
    for (int64_t j = 0; j < nnz; ++j) CHECK(keyed.ids(t)[j] < static_cast<uint64_t>(n));
    const int64_t* starts = keyed.staged_key_starts(t);
    const int* order = keyed.staged_key_order(t);
    CHECK(starts[0] == 0);
    CHECK(starts[n] == nnz);
    std::vector<int> seen(static_cast<size_t>(nnz), 0);
    for (int64_t u = 0; u < n; ++u) {
      CHECK(starts[u] < starts[u + 1]);
      for (int64_t k = starts[u]; k < starts[u + 1]; ++k) {
        REQUIRE(order[k] >= 0);
        REQUIRE(order[k] < nnz);
        CHECK(keyed.ids(t)[order[k]] == static_cast<uint64_t>(u));
        if (k > starts[u]) CHECK(order[k - 1] < order[k]);
        ++seen[static_cast<size_t>(order[k])];
      }
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  }
  // Dense features and labels only (a model without embeddings).
  embedding::DeviceBatch<float> plain;
  plain.stage(ctx, batch);
  CHECK(plain.num_tables() == 0);
  CHECK(plain.lengths() == nullptr);
  CHECK(plain.labels()[3] == batch.labels[3]);
  // A dense width the model does not expect is an error naming the counts.
  data::Batch bad = batch;
  bad.dense.pop_back();
  CHECK_THROWS_WITH(model->forward(ctx, bad, false), Contains("dense values for 7 rows"));
}

TEST_CASE("Every model trains through stage, compute_gradients (device loss) and step",
          "[models][device_batch]") {
  Context ctx;
  const data::Batch batch = test::fixture_batch(0, 64, 5);
  std::vector<std::unique_ptr<models::Model<float>>> all;
  all.push_back(test::fixture_model(ctx));
  all.push_back(test::fixture_din(ctx));
  all.push_back(test::fixture_bst(ctx));
  all.push_back(test::fixture_dual(ctx));
  for (auto& m : all) {
    INFO(m->name());
    train::LocalTrainer<float> trainer(*m, ctx);
    const float* loss = trainer.compute_gradients(trainer.stage(batch));
    CHECK(std::isfinite(*loss));  // a CPU context: the device pointer is host memory
    CHECK(*loss > 0.0f);
    auto* dual = dynamic_cast<models::DualDnn<float>*>(m.get());
    const double first = trainer.step(batch);
    const models::DualLosses first_parts = dual ? dual->last_losses(ctx) : models::DualLosses{};
    double last = first;
    for (int i = 0; i < 20; ++i) last = trainer.step(batch);
    if (dual) {  // the teacher memorises the batch, so distillation terms grow: check the BCEs
      const models::DualLosses parts = dual->last_losses(ctx);
      CHECK(parts.teacher < first_parts.teacher);
      CHECK(parts.student < first_parts.student);
    } else {
      CHECK(last < first);
    }
    // backward() with a given gradient is defined for every model (no "unsupported").
    m->zero_grad(ctx);
    m->forward(ctx, batch, true);
    const std::vector<float> dlogits(batch.size, 0.5f);
    m->backward(ctx, dlogits.data());
    const auto& ps = m->dense_params();
    CHECK(test::any_nonzero(std::vector<float>(ps.grads(), ps.grads() + ps.trainable_size())));
  }
  // The dual model's loss parts stay on the device until asked for.
  auto& dual = dynamic_cast<models::DualDnn<float>&>(*all[3]);
  train::LocalTrainer<float> trainer(dual, ctx);
  const float total = *trainer.compute_gradients(trainer.stage(batch));
  const models::DualLosses parts = dual.last_losses(ctx);
  const auto& c = dual.config();
  CHECK(total == Approx(c.teacher_weight * parts.teacher + c.student_weight * parts.student +
                        c.kd_weight * parts.kd + c.hint_weight * parts.hint)
                     .epsilon(1e-5));
  CHECK(parts.teacher > 0);
  CHECK(parts.student > 0);
}

TEST_CASE("Built-in model presets for a schema", "[models][factory]") {
  Context ctx;
  const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  for (const std::string kind : {"embedding_mlp", "din", "bst", "dual"}) {
    INFO(kind);
    auto m = models::make_preset_model<float>(kind, gen.schema(), 64, ctx);
    CHECK(m->name() == kind);
    train::LocalTrainer<float> trainer(*m, ctx);
    CHECK(std::isfinite(trainer.step(gen.generate(0, 32))));
  }
  auto student = models::make_preset_model<float>("dual", gen.schema(), 64, ctx, true);
  CHECK(dynamic_cast<models::DualDnn<float>&>(*student).config().mode ==
        models::DualMode::StudentOnly);
  CHECK_THROWS_WITH(models::make_preset_model<float>("din", gen.schema(), 64, ctx, true),
                    Contains("needs the dual model"));
  CHECK_THROWS_WITH(models::make_preset_model<float>("wide", gen.schema(), 64, ctx),
                    Contains("'wide' is not a built-in model"));
  // The item history shares the target item's table.
  const auto c = models::preset_din_config(gen.schema(), 64);
  bool shared = false;
  for (const auto& f : c.fields)
    if (f.column == "hist_items") shared = f.table == "item" && f.max_len == 20;
  CHECK(shared);
}

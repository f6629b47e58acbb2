// Base/delta export of dynamic tables (issue 13, lockstep/train/sparse_model.h): what a base and
// a delta carry, computed independently from the batches; base + deltas = the model; the
// trainer's exports; refused inputs.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "lockstep/comm/communicator.h"
#include "lockstep/embedding/feasign_accessor.h"
#include "lockstep/io/safetensors.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/sparse_model.h"
#include "lockstep/train/trainer.h"
#include "model_fixture.h"
#include "data_test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using train::SparseSaveKind;
namespace fs = std::filesystem;

namespace {
/// Shows and clicks per key of each table over `batches` (user: column 0; item: columns 1, 2).
using Counts = std::map<std::string, std::map<uint64_t, std::pair<float, float>>>;
Counts count(const std::vector<data::Batch>& batches) {
  Counts out;
  const std::map<std::string, std::vector<int>> columns = {{"user", {0}}, {"item", {1, 2}}};
  for (const auto& batch : batches)
    for (const auto& [table, cols] : columns)
      for (int c : cols)
        for (int64_t b = 0; b < batch.size; ++b)
          for (int64_t j = batch.sparse[c].offsets[b]; j < batch.sparse[c].offsets[b + 1]; ++j) {
            auto& e = out[table][batch.sparse[c].keys[j]];
            e.first += 1;
            e.second += batch.labels[b];
          }
  return out;
}

std::set<uint64_t> keys_of(const train::SparseServingTable& t) {
  return {t.keys.begin(), t.keys.end()};
}

void train_on(train::LocalTrainer<float>& trainer, const std::vector<data::Batch>& batches) {
  for (const auto& b : batches) trainer.step(b);
}

/// Every feasign of the model's tables with score >= base_threshold, and its values, equal the
/// loaded model's rows (and the loaded model holds nothing else).
void check_equal_to_model(const train::SparseModel& loaded, models::Model<float>& model) {
  for (auto* t : model.tables()) {
    const auto& d = *t->dynamic_table();
    const auto& s = loaded.tables.at(t->config().name);
    INFO("table " << t->config().name);
    std::set<uint64_t> expected;
    for (int64_t slot = 0; slot < d.capacity(); ++slot) {
      if (!d.index().occupied(slot) || !embedding::in_base(d.accessor(), d.stats(slot))) continue;
      const uint64_t key = d.index().key_of(slot);
      expected.insert(key);
      std::vector<float> row(d.dim());
      float lr = 0;
      REQUIRE(s.lookup(key, row.data(), &lr));
      CHECK(lr == d.lr(slot));
      CHECK(s.has_embedx[s.rows.at(key)] == (d.admitted(slot) ? 1 : 0));
      CHECK(row == std::vector<float>(d.embedx() + slot * d.dim(),
                                      d.embedx() + (slot + 1) * d.dim()));
      CHECK(s.show[s.rows.at(key)] == d.stats(slot).show);
    }
    CHECK(keys_of(s) == expected);
  }
}
}  // namespace

TEST_CASE("Sparse export: a delta carries exactly the feasigns touched since the last save that "
          "pass the thresholds; base + deltas = the model",
          "[embedding][dynamic][sparse_export]") {
  Context ctx;
  test::TempDir dir;
  embedding::AccessorConfig a;
  a.embedx_threshold = 1.0f;
  a.base_threshold = 0.3f;  // 3 shows, or a click
  const bool tiny_delta = GENERATE(false, true);
  if (tiny_delta) a.delta_threshold = 1e-6f;  // every touched feasign: base + deltas = model
  INFO("delta_threshold " << a.delta_threshold);
  auto model = test::fixture_dynamic_model(ctx, a);
  train::LocalTrainer<float> trainer(*model, ctx);
  const auto first = test::fixture_batches(8, 16, 0), second = test::fixture_batches(3, 16, 500),
             third = test::fixture_batches(3, 16, 900);
  train_on(trainer, first);
  const auto base = train::write_sparse_model(ctx, dir.file("sparse"), SparseSaveKind::Base, *model, 8);
  train::mark_sparse_saved(ctx, SparseSaveKind::Base, *model);
  CHECK(base.sequence == 1);
  CHECK(fs::path(base.path).filename() == "base-000001");
  check_equal_to_model(train::load_sparse_model(dir.file("sparse")), *model);

  train_on(trainer, second);
  const auto delta = train::write_sparse_model(ctx, dir.file("sparse"), SparseSaveKind::Delta, *model, 11);
  train::mark_sparse_saved(ctx, SparseSaveKind::Delta, *model);
  CHECK(fs::path(delta.path).filename() == "delta-000002");
  // Expected from the batches alone: touched since the base, delta score >= delta_threshold
  // (the score of the counts since the base for a feasign the base carried; of all its counts for
  // one it did not: the serving side has none of it), total score >= base_threshold.
  const Counts before = count(first), since = count(second), total = count([&] {
    auto all = first;
    all.insert(all.end(), second.begin(), second.end());
    return all;
  }());
  {
    // An export read alone: renamed as a base of its own, it is refused (its manifest says
    // what it is).
    test::TempDir alone;
    fs::copy(delta.path, alone.file("base-000002"), fs::copy_options::recursive);
    CHECK_THROWS_WITH(train::load_sparse_model(alone.path().string()), Contains("a renamed export"));
  }
  const auto loaded = train::load_sparse_model(dir.file("sparse"));
  CHECK(loaded.base == 1);
  CHECK(loaded.deltas == std::vector<int64_t>{2});
  int64_t in_delta_total = 0;
  for (auto* t : model->tables()) {
    const std::string& name = t->config().name;
    INFO("table " << name);
    std::set<uint64_t> expected;
    for (const auto& [key, sc] : since.at(name)) {
      const auto& tot = total.at(name).at(key);
      const auto b = before.at(name).find(key);
      const bool in_base = b != before.at(name).end() &&
                           embedding::show_click_score(a, b->second.first, b->second.second) >=
                               a.base_threshold;
      const auto& gained = in_base ? sc : tot;
      const float delta_score = embedding::show_click_score(a, gained.first, gained.second);
      const float score = embedding::show_click_score(a, tot.first, tot.second);
      if (delta_score >= a.delta_threshold && score >= a.base_threshold) expected.insert(key);
    }
    const auto file = io::read_safetensors(delta.path + "/" + name + ".safetensors");
    const auto keys = file.get("keys").as<uint64_t>();
    CHECK(std::set<uint64_t>(keys.begin(), keys.end()) == expected);
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    CHECK(delta.feasigns.at(name) == static_cast<int64_t>(expected.size()));
    in_delta_total += static_cast<int64_t>(expected.size());
    CHECK(t->dynamic_table()->export_slots(true).empty());  // the delta scores were reset
  }
  CHECK(in_delta_total > 0);

  train_on(trainer, third);
  train::write_sparse_model(ctx, dir.file("sparse"), SparseSaveKind::Delta, *model, 14);
  train::mark_sparse_saved(ctx, SparseSaveKind::Delta, *model);
  const auto all = train::load_sparse_model(dir.file("sparse"));
  CHECK(all.deltas == std::vector<int64_t>{2, 3});
  if (tiny_delta) check_equal_to_model(all, *model);
  {
    // A lost delta in the middle: refused (base + the rest would serve stale values silently).
    test::TempDir gap;
    for (const char* name : {"base-000001", "delta-000003"})
      fs::copy(dir.file(std::string("sparse/") + name), gap.file(name),
               fs::copy_options::recursive);
    CHECK_THROWS_WITH(train::load_sparse_model(gap.path().string()),
                      Contains("delta-000002 is missing (the exports after base 1 go on with "
                               "delta-000003)"));
  }

  // A new base supersedes the deltas before it.
  train::write_sparse_model(ctx, dir.file("sparse"), SparseSaveKind::Base, *model, 14);
  const auto rebased = train::load_sparse_model(dir.file("sparse"));
  CHECK(rebased.base == 4);
  CHECK(rebased.deltas.empty());
  check_equal_to_model(rebased, *model);
}

TEST_CASE("Sparse export: corrupted files and missing bases are refused with the path",
          "[embedding][dynamic][sparse_export]") {
  Context ctx;
  test::TempDir dir;
  embedding::AccessorConfig a;
  a.base_threshold = 0.0f;
  auto model = test::fixture_dynamic_model(ctx, a);
  CHECK_THROWS_WITH(train::load_sparse_model(dir.path().string()), Contains("no base-<n> directory"));
  train::LocalTrainer<float> trainer(*model, ctx);
  train_on(trainer, test::fixture_batches(2, 8));
  train::write_sparse_model(ctx, dir.path().string(), SparseSaveKind::Delta, *model, 2);
  CHECK_THROWS_WITH(train::load_sparse_model(dir.path().string()), Contains("no base-<n> directory"));
  const auto base = train::write_sparse_model(ctx, dir.path().string(), SparseSaveKind::Base, *model, 2);
  CHECK(train::load_sparse_model(dir.path().string()).deltas.empty());  // the older delta is superseded
  {
    std::fstream f(base.path + "/user.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  CHECK_THROWS_WITH(train::load_sparse_model(dir.path().string()), Contains("user.safetensors"));
  auto hashed = test::fixture_model(ctx);
  CHECK_THROWS_WITH(train::write_sparse_model(ctx, dir.file("h"), SparseSaveKind::Base, *hashed, 0),
                    Contains("the model has none"));
}

TEST_CASE("The trainer writes a base at every epoch's end and deltas in between",
          "[train][dynamic][sparse_export]") {
  Context ctx;
  test::TempDir dir;
  auto comm = comm::create_communicator("local", ctx.device());
  embedding::AccessorConfig a;
  a.base_threshold = 0.2f;
  auto model = test::fixture_dynamic_model(ctx, a);
  train::TrainerConfig cfg;
  cfg.log_every = 0;
  cfg.epochs = 2;
  cfg.sparse_export_dir = dir.file("sparse");
  cfg.sparse_delta_every = 2;
  train::Trainer trainer(*model, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(5, 16));
  trainer.fit(source);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.file("sparse")))
    names.insert(e.path().filename().string());
  // Deltas after steps 2 and 4, the base after step 5 (the epoch's last), deltas after 6 and 8,
  // the base after 10.
  CHECK(names == std::set<std::string>{"delta-000001", "delta-000002", "base-000003",
                                       "delta-000004", "delta-000005", "base-000006"});
  const auto loaded = train::load_sparse_model(dir.file("sparse"));
  CHECK(loaded.base == 6);
  // The last base was written before the epoch's shrink: it holds what the model held then,
  // a superset of what the model holds after the shrink deleted some.
  for (auto* t : model->tables()) {
    const auto& d = *t->dynamic_table();
    for (int64_t s : d.export_slots(false))
      CHECK(loaded.tables.at(t->config().name).rows.count(d.index().key_of(s)) == 1);
  }

  auto hashed = test::fixture_model(ctx);
  CHECK_THROWS_WITH(train::Trainer(*hashed, *comm, ctx, cfg), Contains("the model has none"));
}

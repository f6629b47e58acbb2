// The EmbeddingMlp model: whole-model gradient check, determinism, configuration errors.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "table_grad.h"
#include "model_gradcheck.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/nn/loss.h"
#include "lockstep/train/collisions.h"
#include "lockstep/train/local_trainer.h"
#include <set>
#include "model_fixture.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
// Small tables: the finite-difference checks perturb every table entry.
models::EmbeddingMlpConfig small_config(nn::ActivationKind act) {
  return test::fixture_config(act, 11, 17);
}
const std::vector<std::string>& kColumns = test::fixture_columns();
}  // namespace

TEST_CASE("EmbeddingMlp: whole-model finite-difference gradient check", "[model][gradcheck]") {
  Context ctx;
  using K = nn::ActivationKind;
  for (K act : {K::PReLU, K::Dice}) {
    for (int64_t rows : {1, 7}) {
      if (act == K::Dice && rows == 1) continue;
      DYNAMIC_SECTION(nn::activation_name(act) << " rows=" << rows) {
        models::EmbeddingMlp<double> model(small_config(act), kColumns, 3, ctx);
        const data::Batch batch = test::fixture_batch(3, rows);
        test::check_model_gradient(model, batch, /*touched_rows_only=*/false);
      }
    }
  }
}

TEST_CASE("Same seed and data twice give bitwise-identical parameters", "[model][determinism]") {
  Context ctx;
  const auto train = [&](uint64_t seed) {
    auto cfg = small_config(nn::ActivationKind::Dice);
    cfg.seed = seed;
    models::EmbeddingMlp<float> model(cfg, kColumns, 3, ctx);
    train::LocalTrainer<float> trainer(model, ctx);
    for (int step = 0; step < 15; ++step) trainer.step(test::fixture_batch(100 * step, 32));
    return test::all_state(ctx, model);
  };
  const auto a = train(5), b = train(5), c = train(6);
  test::require_bitwise_equal(a, b, "two runs with seed 5");
  REQUIRE(a.size() == c.size());
  CHECK(a != c);  // the seed matters
}

TEST_CASE("Training reduces the loss and an empty batch changes nothing", "[model][train]") {
  Context ctx;
  auto cfg = small_config(nn::ActivationKind::ReLU);
  cfg.dense_optimizer.lr = 0.01f;
  models::EmbeddingMlp<float> model(cfg, kColumns, 3, ctx);
  train::LocalTrainer<float> trainer(model, ctx);
  const data::Batch batch = test::fixture_batch(0, 64);
  const double first = trainer.step(batch);
  double last = first;
  for (int i = 0; i < 100; ++i) last = trainer.step(batch);
  CHECK(last < 0.5 * first);  // memorising one batch must work
  const auto before = model.dense_params().to_host(ctx);
  data::Batch empty = test::fixture_batch(0, 0);
  CHECK(trainer.step(empty) == 0.0);
  CHECK(model.dense_params().to_host(ctx) == before);
  const auto p = trainer.predict(batch);
  REQUIRE(p.size() == 64);
  double err = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    REQUIRE(p[i] >= 0.0f);
    REQUIRE(p[i] <= 1.0f);
    err += std::abs(p[i] - batch.labels[i]);
  }
  CHECK(err / p.size() < 0.25);  // the memorised batch is predicted well
}

namespace {
std::string write_file(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}
const char* kGoodConfig = R"(seed = 3
[model]
use_dense = true
[model.mlp]
widths = [16, 8, 1]
activation = "dice"
[[model.tables]]
name = "item"
rows = 1000
dim = 8
pooling = "mean"
[[model.fields]]
column = "hist"
table = "item"
[optimizer]
kind = "adam"
lr = 0.002
[sparse_optimizer]
kind = "adagrad"
lr = 0.05
)";
}  // namespace

TEST_CASE("Model configuration loads from TOML", "[model][config]") {
  const auto c = models::load_embedding_mlp_config(write_file("lockstep_good.toml", kGoodConfig));
  CHECK(c.seed == 3);
  CHECK(c.mlp.widths == std::vector<int64_t>{16, 8, 1});
  CHECK(c.mlp.activation.kind == nn::ActivationKind::Dice);
  REQUIRE(c.tables.size() == 1);
  CHECK(c.tables[0].rows == 1000);
  CHECK(c.tables[0].pooling == embedding::Pooling::Mean);
  CHECK(c.fields[0].column == "hist");
  CHECK(c.dense_optimizer.lr == Approx(0.002));
  CHECK(c.sparse_optimizer.kind == nn::OptimizerKind::Adagrad);
}

TEST_CASE("Bad model configuration names file, line and field", "[model][config][errors]") {
  const auto bad = [](const std::string& from, const std::string& to) {
    std::string text = kGoodConfig;
    text.replace(text.find(from), from.size(), to);
    return write_file("lockstep_bad.toml", text);
  };
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("[16, 8, 1]", "[16, 0, 1]")),
                    Contains("lockstep_bad.toml:5") && Contains("model.mlp.widths[1] = 0") &&
                        Contains("[1, 1048576]"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("widths", "wdiths")),
                    Contains(":5") && Contains("unknown key model.mlp.wdiths"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("\"dice\"", "\"swish\"")),
                    Contains(":6") && Contains("model.mlp.activation = 'swish'"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("rows = 1000", "rows = -5")),
                    Contains(":9") && Contains("model.tables[0].rows = -5"));
  // A float where an integer belongs, even one far outside the int64 range (found by
  // fuzz/model_config.cpp: the conversion was undefined behaviour).
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("rows = 1000", "rows = 1e75")),
                    Contains(":9") && Contains("model.tables[0].rows must be an integer"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("rows = 1000", "rows = 1000.0")),
                    Contains(":9") && Contains("model.tables[0].rows must be an integer"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("lr = 0.002", "lr = \"fast\"")),
                    Contains(":17") && Contains("optimizer.lr must be a number"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("[16, 8, 1]", "[16, 8, 2]")),
                    Contains("must have width 1"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(bad("dim = 8", "dim = 8 8")),
                    Contains("lockstep_bad.toml:10"));
  CHECK_THROWS_WITH(models::load_embedding_mlp_config("/nonexistent/model.toml"),
                    Contains("/nonexistent/model.toml"));
}

TEST_CASE("Tables with ids = \"identity\": a key is its row, a key >= rows names the table",
          "[model][config][identity]") {
  std::string text = kGoodConfig;
  text.replace(text.find("rows = 1000"), 11, "rows = 1000\nids = \"identity\"");
  const auto c = models::load_embedding_mlp_config(write_file("lockstep_identity.toml", text));
  REQUIRE(c.tables[0].identity);
  embedding::EmbeddingTable<float> table(c.tables[0], c.sparse_optimizer);
  CHECK(table.row_of(0) == 0);
  CHECK(table.row_of(999) == 999);
  CHECK_THROWS_WITH(table.row_of(1000),
                    Contains("table '" + c.tables[0].name + "' (ids = \"identity\"): id 1000 is "
                             "not below rows = 1000"));
  embedding::TableConfig hashed = c.tables[0];
  hashed.identity = false;
  embedding::EmbeddingTable<float> h(hashed, c.sparse_optimizer);
  CHECK(h.row_of(1000) < 1000);
  text.replace(text.find("\"identity\""), 10, "\"modulo\"");
  CHECK_THROWS_WITH(models::load_embedding_mlp_config(write_file("lockstep_identity.toml", text)),
                    Contains("lockstep_identity.toml:10") &&
                        Contains("model.tables[0].ids = 'modulo' is not a key mapping"));
}

TEST_CASE("count_collisions counts distinct keys and the rows they share per table",
          "[model][collisions]") {
  Context ctx;
  auto model = test::fixture_model(ctx);  // tables user (101 rows) and item (257: item + hist)
  const data::Batch b = test::fixture_batch(0, 300);
  const auto counts =
      train::count_collisions(*model, test::fixture_columns(), train::keys_by_column(b), false);
  REQUIRE(counts.size() == 2);
  for (size_t t = 0; t < 2; ++t) {
    auto* table = model->tables()[t];
    std::set<uint64_t> keys, rows;
    for (size_t c = 0; c < 3; ++c) {
      const bool reads = (t == 0) == (c == 0);  // user reads column 0; item columns 1 and 2
      if (!reads) continue;
      for (uint64_t k : b.sparse[c].keys) keys.insert(k);
    }
    for (uint64_t k : keys) rows.insert(table->row_of(k));
    CHECK(counts[t].table == table->config().name);
    CHECK(counts[t].keys == static_cast<int64_t>(keys.size()));
    CHECK(counts[t].rows_used == static_cast<int64_t>(rows.size()));
    CHECK(counts[t].colliding() > 0);  // ~500 key values into 101 or 257 rows
  }
  const std::string text = train::describe_collisions(counts, 300);
  CHECK_THAT(text, Contains(fmt::format("table 'user': {} distinct keys in 101 rows, {} share a row",
                                        counts[0].keys, counts[0].colliding())) &&
                       Contains("among the keys of the first 300 records"));
}

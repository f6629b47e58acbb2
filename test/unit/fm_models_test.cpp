// LR, FM and DeepFM as exact embedding_mlp models ([model.fm], docs/configuration.md "LR, FM
// and DeepFM exactly"): each equals its hand-computed formula, gradient checks, the shorthand
// tables, and config errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <set>

#include "model_gradcheck.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"
#include "lockstep/nn/loss.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "table_grad.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
constexpr int64_t kRows = 500;  // fixture_batch keys are < 500: identity tables, row = key
const std::vector<std::string>& kColumns = test::fixture_columns();  // user, item, hist

embedding::TableConfig table(const std::string& name, int64_t dim, embedding::Pooling pooling) {
  embedding::TableConfig t{name, kRows, dim, pooling, 0.1f};
  t.identity = true;
  return t;
}

/// user (sum), item (mean; read by item and hist) of width `dim`, their first-order tables when
/// `first`, an MLP when `mlp` (else none), the second-order term when `second`.
models::EmbeddingMlpConfig fm_config(bool first, bool second, bool mlp, int64_t dim = 4) {
  using embedding::Pooling;
  models::EmbeddingMlpConfig c;
  if (first) {
    c.tables = {table("user.linear", 1, Pooling::Sum), table("item.linear", 1, Pooling::Sum)};
    c.fields = {{"user", "user.linear"}, {"item", "item.linear"}, {"hist", "item.linear"}};
    c.fm.first_order = true;
    c.fm.linear_tables = {"user.linear", "item.linear"};
  }
  if (second || mlp) {
    c.tables.push_back(table("user", dim, Pooling::Sum));
    c.tables.push_back(table("item", dim, Pooling::Mean));
    c.fields.push_back({"user", "user"});
    c.fields.push_back({"item", "item"});
    c.fields.push_back({"hist", "item"});
  }
  c.fm.second_order = second;
  c.use_dense = mlp;
  c.mlp =
      mlp ? nn::MlpConfig{{8, 1}, {nn::ActivationKind::ReLU}, false} : nn::MlpConfig{{}, {}, false};
  c.seed = 7;
  return c;
}

const embedding::EmbeddingTable<double>& find_table(models::EmbeddingMlp<double>& m,
                                                    const std::string& name) {
  for (auto* t : m.tables())
    if (t->config().name == name) return *t;
  FAIL("no table " << name);
  throw;
}

/// The ids of column c of sample b.
std::vector<uint64_t> ids(const data::Batch& batch, int c, int64_t b) {
  const auto& col = batch.sparse[c];
  const int64_t lo = col.offsets[b], hi = col.offsets[b + 1];  // offsets: rows + 1, from 0
  return {col.keys.begin() + lo, col.keys.begin() + hi};
}

/// Pooled embedding of column c of sample b from table t (sum or mean; empty: zeros).
std::vector<double> pooled(const embedding::EmbeddingTable<double>& t, const data::Batch& batch,
                           int c, int64_t b) {
  std::vector<double> v(t.dim(), 0.0);
  const auto keys = ids(batch, c, b);
  for (uint64_t k : keys)
    for (int64_t d = 0; d < t.dim(); ++d) v[d] += t.weights()[k * t.dim() + d];
  if (t.config().pooling == embedding::Pooling::Mean && !keys.empty())
    for (auto& x : v) x /= static_cast<double>(keys.size());
  return v;
}

/// Σ over the ids of the three columns of their first-order weights (hand-computed).
double first_order(models::EmbeddingMlp<double>& m, const data::Batch& batch, int64_t b) {
  const auto& user = find_table(m, "user.linear");
  const auto& item = find_table(m, "item.linear");
  double s = 0;
  for (uint64_t k : ids(batch, 0, b)) s += user.weights()[k];
  for (int c : {1, 2})
    for (uint64_t k : ids(batch, c, b)) s += item.weights()[k];
  return s;
}

/// Σ_{f<g} <v_f, v_g> by brute force over the three fields.
double second_order(models::EmbeddingMlp<double>& m, const data::Batch& batch, int64_t b) {
  const std::vector<std::vector<double>> v = {pooled(find_table(m, "user"), batch, 0, b),
                                              pooled(find_table(m, "item"), batch, 1, b),
                                              pooled(find_table(m, "item"), batch, 2, b)};
  double s = 0;
  for (size_t f = 0; f < v.size(); ++f)
    for (size_t g = f + 1; g < v.size(); ++g)
      for (size_t d = 0; d < v[f].size(); ++d) s += v[f][d] * v[g][d];
  return s;
}

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

void gradcheck(models::EmbeddingMlp<double>& model, const data::Batch& batch) {
  // Only the rows the batch reads (the others have zero gradient both ways).
  test::check_model_gradient(model, batch, /*touched_rows_only=*/true);
}

const data::Schema& synthetic_schema() {
  static const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  return gen.schema();
}
std::string example(const std::string& name) {
  std::ifstream in(std::string(LOCKSTEP_SOURCE_DIR) + "/examples/configs/" + name);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), {}};
}
}  // namespace

TEST_CASE("LR: logit = bias + Σ weights, and one step is the hand-computed update", "[model][fm]") {
  Context ctx;
  auto cfg = fm_config(true, false, false);
  cfg.dense_optimizer = {nn::OptimizerKind::Sgd, 0.5f};
  cfg.sparse_optimizer = {nn::OptimizerKind::Adagrad, 0.25f};
  models::EmbeddingMlp<double> model(cfg, kColumns, 3, ctx);
  REQUIRE(model.dense_params().size() >= 1);
  REQUIRE(model.tables().size() == 2);
  double* bias = model.dense_params().value(model.dense_params().find("fm.bias"));
  *bias = 0.3;
  const data::Batch batch = test::fixture_batch(11, 6);
  const double* z = model.forward(ctx, batch, false);
  std::vector<double> expect(batch.size);
  for (int64_t b = 0; b < batch.size; ++b) {
    expect[b] = 0.3 + first_order(model, batch, b);
    CHECK(z[b] == Approx(expect[b]).margin(1e-12));
  }
  REQUIRE(model.second_order_terms() == nullptr);
  REQUIRE(model.mlp_logits() == nullptr);

  // One step: g = (σ(z) − y) per sample, the mean over the batch; SGD on b, row-wise Adagrad
  // (dim 1, accumulator 0) on each weight: acc = g², w −= lr·g / (√acc + eps).
  const auto& user = find_table(model, "user.linear");
  const auto& item = find_table(model, "item.linear");
  std::vector<double> wu(user.weights(), user.weights() + kRows);
  std::vector<double> wi(item.weights(), item.weights() + kRows);
  std::vector<double> gu(kRows, 0.0), gi(kRows, 0.0);
  double gb = 0;
  const double n = static_cast<double>(batch.size);
  for (int64_t b = 0; b < batch.size; ++b) {
    const double r = (sigmoid(expect[b]) - batch.labels[b]) / n;
    gb += r;
    for (uint64_t k : ids(batch, 0, b)) gu[k] += r;
    for (int c : {1, 2})
      for (uint64_t k : ids(batch, c, b)) gi[k] += r;
  }
  const double eps = static_cast<double>(1e-8f);
  const auto update = [&](std::vector<double>& w, const std::vector<double>& g) {
    for (int64_t k = 0; k < kRows; ++k)
      if (g[k] != 0.0) w[k] -= 0.25 * g[k] / (std::sqrt(g[k] * g[k]) + eps);
  };
  update(wu, gu);
  update(wi, gi);
  train::LocalTrainer<double> trainer(model, ctx);
  trainer.step(batch);
  CHECK(*bias == Approx(0.3 - 0.5 * gb).margin(1e-12));
  std::set<uint64_t> users;
  for (int64_t b = 0; b < batch.size; ++b) users.insert(ids(batch, 0, b)[0]);
  size_t changed = 0;
  for (int64_t k = 0; k < kRows; ++k) {
    INFO("row " << k);
    CHECK(user.weights()[k] == Approx(wu[k]).margin(1e-12));
    CHECK(item.weights()[k] == Approx(wi[k]).margin(1e-12));
    changed += gu[k] != 0.0;
  }
  CHECK(changed == users.size());  // every sample's user id has a gradient (and was updated)
}

TEST_CASE("FM: the second-order term is Σ_{f<g} <v_f, v_g>, the logit bias + first + second",
          "[model][fm]") {
  Context ctx;
  for (const bool first : {false, true}) {
    DYNAMIC_SECTION("first_order=" << first) {
      models::EmbeddingMlp<double> model(fm_config(first, true, false, 5), kColumns, 3, ctx);
      *model.dense_params().value(model.dense_params().find("fm.bias")) = -0.2;
      const data::Batch batch = test::fixture_batch(3, 9);  // some histories are empty
      const double* z = model.forward(ctx, batch, false);
      const double* second = model.second_order_terms();
      REQUIRE(second != nullptr);
      REQUIRE((model.first_order_terms() != nullptr) == first);
      for (int64_t b = 0; b < batch.size; ++b) {
        const double s = second_order(model, batch, b);
        CHECK(std::abs(s) > 1e-6);  // not a check on zeros
        CHECK(second[b] == Approx(s).margin(1e-12));
        const double f = first ? first_order(model, batch, b) : 0.0;
        if (first) CHECK(model.first_order_terms()[b] == Approx(f).margin(1e-12));
        CHECK(z[b] == Approx(-0.2 + f + s).margin(1e-12));
      }
    }
  }
}

TEST_CASE("DeepFM: logit = the MLP of the plain model + the FM model's logit", "[model][fm]") {
  Context ctx;
  // Parameters are keyed by (seed, name): the plain embedding_mlp has the same MLP and
  // embedding tables, the FM-only model the same tables and first-order weights (bias 0).
  models::EmbeddingMlp<double> deepfm(fm_config(true, true, true), kColumns, 3, ctx);
  auto plain_cfg = fm_config(false, false, true);
  models::EmbeddingMlp<double> plain(plain_cfg, kColumns, 3, ctx);
  models::EmbeddingMlp<double> fm(fm_config(true, true, false), kColumns, 3, ctx);
  const data::Batch batch = test::fixture_batch(40, 7);
  const double* z = deepfm.forward(ctx, batch, false);
  const double* zp = plain.forward(ctx, batch, false);
  const double* zf = fm.forward(ctx, batch, false);
  for (int64_t b = 0; b < batch.size; ++b) {
    CHECK(deepfm.mlp_logits()[b] == zp[b]);  // the same MLP over the same inputs, bitwise
    CHECK(deepfm.first_order_terms()[b] == fm.first_order_terms()[b]);
    CHECK(deepfm.second_order_terms()[b] == fm.second_order_terms()[b]);
    CHECK(z[b] == Approx(zp[b] + zf[b]).margin(1e-12));
    CHECK(z[b] == Approx(zp[b] + first_order(deepfm, batch, b) + second_order(deepfm, batch, b))
                      .margin(1e-12));
  }
  // The deep part reads the embeddings only: first-order weights are not MLP inputs.
  CHECK(deepfm.input_width() == plain.input_width());
}

TEST_CASE("LR, FM and DeepFM: whole-model finite-difference gradient checks",
          "[model][fm][gradcheck]") {
  Context ctx;
  struct Case {
    const char* name;
    bool first, second, mlp;
  };
  for (const Case& k : {Case{"lr", true, false, false}, Case{"fm", true, true, false},
                        Case{"fm2", false, true, false}, Case{"deepfm", true, true, true},
                        Case{"deepfm-no-linear", false, true, true}}) {
    for (int64_t rows : {1, 7}) {
      DYNAMIC_SECTION(k.name << " rows=" << rows) {
        models::EmbeddingMlp<double> model(fm_config(k.first, k.second, k.mlp), kColumns, 3, ctx);
        gradcheck(model, test::fixture_batch(5, rows));
      }
    }
  }
}

TEST_CASE("The example LR, FM and DeepFM configs build on any schema with sparse columns",
          "[model][fm][config]") {
  Context ctx;
  const data::Schema ads =
      data::Schema::load(std::string(LOCKSTEP_SOURCE_DIR) + "/examples/data/ads.schema.toml");
  for (const data::Schema* schema : {&synthetic_schema(), &ads}) {
    std::vector<std::string> columns;
    for (int64_t c : schema->sparse_columns()) columns.push_back(schema->columns()[c].name);
    for (const std::string name : {"lr.toml", "fm.toml", "deepfm.toml"}) {
      INFO(name);
      const auto model = models::build_model<float>(example(name), name, *schema, ctx);
      auto* m = dynamic_cast<models::EmbeddingMlp<float>*>(model.get());
      REQUIRE(m != nullptr);
      const auto& c = m->config();
      CHECK(c.fm.first_order);
      CHECK(c.fm.second_order == (name != "lr.toml"));
      CHECK(c.mlp.widths.empty() == (name != "deepfm.toml"));
      // The first-order fields first: every column reads "<its table>.linear".
      const auto& fields = m->embeddings().fields();
      REQUIRE(fields.size() >= columns.size());
      for (size_t i = 0; i < columns.size(); ++i) {
        CHECK(fields[i].column == columns[i]);
        CHECK(fields[i].table.size() > 7);
        CHECK(fields[i].table.substr(fields[i].table.size() - 7) == ".linear");
      }
      // LR: the first-order tables only; FM, DeepFM: one embedding field per column as well.
      CHECK(fields.size() == (name == "lr.toml" ? 1 : 2) * columns.size());
      for (auto* t : m->tables())
        if (t->config().name.find(".linear") != std::string::npos) {
          CHECK(t->dim() == 1);
          CHECK(t->config().pooling == embedding::Pooling::Sum);
        }
    }
  }
}

TEST_CASE("[model.fm] errors name the key", "[model][fm][config][errors]") {
  Context ctx;
  const auto build = [&](const std::string& text) {
    return models::build_model<float>(text, "m.toml", synthetic_schema(), ctx);
  };
  const std::string head = "[model]\nuse_dense = false\n[model.tables_per_column]\nrows = 100\n";
  CHECK_THROWS_WITH(build(head + "[model.mlp]\nwidths = []\n"),
                    Contains("m.toml:") && Contains("model.mlp.widths is empty") &&
                        Contains("[model.fm] adds no term"));
  CHECK_THROWS_WITH(build("[model]\n[model.mlp]\nwidths = []\n[model.fm]\nfirst_order = true\n"
                          "[model.tables_per_column]\nrows = 100\n"),
                    Contains("m.toml:1") && Contains("model.use_dense = true but model.mlp.widths "
                                                     "is empty"));
  CHECK_THROWS_WITH(build(head + "[model.fm]\nfirst_order = true\nlinear_tables = [\"user\"]\n"),
                    Contains("m.toml:7") && Contains("drop linear_tables"));
  CHECK_THROWS_WITH(
      build(head + "[model.fm]\nsecond_order = true\nfields = [\"user\", \"nope\"]\n"),
      Contains("m.toml:7") && Contains("model.fm.fields[1] = 'nope'"));
  CHECK_THROWS_WITH(
      build(head + "[model.columns.user]\ndim = 8\n[model.fm]\nsecond_order = true\n"),
      Contains("model.fm.fields: field") && Contains("needs fields of one width"));
  CHECK_THROWS_WITH(build(head + "[model.fm]\nfirst_out = true\n"),
                    Contains("m.toml:6") && Contains("unknown key model.fm.first_out"));
  // Explicit: first_order needs its tables, which need dim 1 and sum pooling, first.
  models::EmbeddingMlpConfig c = fm_config(true, true, false);
  c.fm.linear_tables = {};
  CHECK_THROWS_WITH(c.validate(), Contains("model.fm.first_order = true needs"));
  c = fm_config(true, true, false);
  c.fm.linear_tables = {"user.linear", "item"};
  CHECK_THROWS_WITH(c.validate(), Contains("model.fm.linear_tables[1] = 'item' has dim 4"));
  c = fm_config(true, true, false);
  std::swap(c.fields[0], c.fields[3]);
  CHECK_THROWS_WITH(c.validate(), Contains("list the first-order fields first"));
  c = fm_config(true, true, false);
  c.fm.second_order = false;
  CHECK_THROWS_WITH(c.validate(), Contains("nothing reads them"));
}

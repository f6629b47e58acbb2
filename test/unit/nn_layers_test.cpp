// Finite-difference gradient checks (double, CPU) for every layer, and layer error paths.
#include <catch2/catch.hpp>

#include "gradcheck.h"
#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/nn/linear.h"
#include "lockstep/nn/loss.h"
#include "lockstep/nn/mlp.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
double dot(const double* a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < b.size(); ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

TEST_CASE("Linear: finite-difference gradients of weight, bias and input", "[nn][gradcheck]") {
  Context ctx;
  for (auto [rows, in, out] : {std::tuple{1, 1, 1}, std::tuple{5, 7, 3}, std::tuple{0, 4, 2}}) {
    nn::ParamSet<double> ps;
    nn::Linear<double> lin(ps, "fc", in, out);
    ps.allocate(ctx, 11);
    auto x = test::random_vector<double>(rows * in, 1);
    const auto w = test::random_vector<double>(rows * out, 2);  // L = Σ w ⊙ y
    std::vector<double> y(rows * out), dx(rows * in);
    const auto loss = [&] {
      lin.forward(ctx, rows, x.data(), y.data());
      return dot(y.data(), w);
    };
    ps.zero_grad(ctx);
    lin.forward(ctx, rows, x.data(), y.data());
    lin.backward(ctx, rows, x.data(), w.data(), dx.data());
    if (rows == 0) {
      CHECK_FALSE(test::any_nonzero(std::vector<double>(ps.grads(), ps.grads() + ps.size())));
      continue;
    }
    test::check_gradient("dW, db", loss, ps.values(), ps.grads(), ps.size());
    test::check_gradient("dx", loss, x.data(), dx.data(), rows * in);
  }
}

TEST_CASE("Linear and MLP reject bad sizes naming the field", "[nn][errors]") {
  nn::ParamSet<float> ps;
  CHECK_THROWS_WITH(nn::Linear<float>(ps, "fc", 0, 3),
                    Contains("fc.in_features = 0") && Contains("[1, "));
  nn::MlpConfig bad{{80, 0, 1}, {}, false};
  CHECK_THROWS_WITH(nn::Mlp<float>(ps, "tower", 4, bad), Contains("tower.widths[1] = 0"));
  nn::MlpConfig empty{{}, {}, false};
  CHECK_THROWS_WITH(nn::Mlp<float>(ps, "tower", 4, empty), Contains("tower.widths is empty"));
  CHECK_THROWS_WITH(nn::parse_activation("gelu", "model.mlp.activation"),
                    Contains("'gelu'") && Contains("prelu") && Contains("dice"));
  nn::ActivationConfig act;
  act.dice_momentum = 1.5f;
  CHECK_THROWS_WITH(act.validate("m"), Contains("m.dice_momentum = 1.5"));
  nn::ParamSet<float> dup;
  dup.add("a", {2}, nn::Init::zeros());
  CHECK_THROWS_WITH(dup.add("a", {3}, nn::Init::zeros()), Contains("duplicate parameter name 'a'"));
}

TEST_CASE("MLP: finite-difference gradients for every activation", "[nn][gradcheck]") {
  Context ctx;
  using K = nn::ActivationKind;
  for (K kind : {K::None, K::ReLU, K::PReLU, K::LeakyReLU, K::Sigmoid, K::Dice}) {
    for (bool activate_last : {false, true}) {
      for (int64_t rows : {1, 6}) {
        if (kind == K::Dice && rows == 1) continue;  // batch statistics of one row are constant
        DYNAMIC_SECTION(nn::activation_name(kind)
                        << " activate_last=" << activate_last << " rows=" << rows) {
          nn::ParamSet<double> ps;
          nn::MlpConfig cfg{{5, 4, 2}, {kind}, activate_last};
          cfg.activation.leaky_slope = 0.1f;
          nn::Mlp<double> mlp(ps, "mlp", 3, cfg);
          ps.allocate(ctx, 5);
          // PReLU/Dice alphas start equal: spread them so their gradients differ per channel.
          // Biases start at zero: make them positive so that ReLU units are not all dead.
          for (const auto& e : ps.entries()) {
            if (e.name.find("alpha") != std::string::npos)
              for (int64_t i = 0; i < e.numel(); ++i) ps.values()[e.offset + i] = 0.1 + 0.05 * i;
            if (e.name.find("bias") != std::string::npos)
              for (int64_t i = 0; i < e.numel(); ++i)
                ps.values()[e.offset + i] = (e.name == "mlp.2.bias" ? 3.0 : 0.3) + 0.1 * i;
          }
          auto x = test::random_vector<double>(rows * 3, 3, -2, 2);
          const auto w = test::random_vector<double>(rows * 2, 4);
          std::vector<double> dx(rows * 3);
          const auto loss = [&] { return dot(mlp.forward(ctx, rows, x.data(), true), w); };
          ps.zero_grad(ctx);
          mlp.forward(ctx, rows, x.data(), true);
          mlp.backward(ctx, rows, x.data(), w.data(), dx.data());
          std::vector<double> analytic(ps.grads(), ps.grads() + ps.size());
          std::vector<int64_t> trainable;
          for (const auto& e : ps.entries())
            if (e.trainable)
              for (int64_t i = 0; i < e.numel(); ++i) trainable.push_back(e.offset + i);
          test::check_gradient("parameters", loss, ps.values(), analytic.data(), ps.size(),
                               trainable, 1e-6, 2e-6);
          test::check_gradient("input", loss, x.data(), dx.data(), rows * 3, {}, 1e-6, 2e-6);
        }
      }
    }
  }
}

TEST_CASE("Dice running averages drive inference mode", "[nn][dice]") {
  Context ctx;
  nn::ParamSet<double> ps;
  nn::ActivationConfig cfg{nn::ActivationKind::Dice};
  cfg.dice_momentum = 0.5f;
  nn::Activation<double> dice(ps, "d", 2, cfg);
  ps.allocate(ctx, 1);
  const std::vector<double> x = {1, 10, 3, 20, 5, 60};  // column means 3 and 30
  std::vector<double> y(6), y_infer(6);
  dice.forward(ctx, 3, x.data(), y.data(), true);
  const auto state = ps.to_host(ctx);
  // running = 0.5 * init + 0.5 * batch (unbiased variance): means 1.5, 15; vars 0.5 + 0.5*4,
  // 0.5+0.5*700
  test::require_close(state.at("d.running_mean"), std::vector<double>{1.5, 15}, 1e-6, 1e-6, "mean");
  test::require_close(state.at("d.running_var"), std::vector<double>{2.5, 350.5}, 1e-6, 1e-6,
                      "var");
  dice.forward(ctx, 3, x.data(), y_infer.data(), false);
  // Inference with running stats: p = σ((x − rm)/sqrt(rv + eps)), y = x (α + p (1 − α)).
  for (int i = 0; i < 6; ++i) {
    const int c = i % 2;
    const double rm = c ? 15 : 1.5, rv = c ? 350.5 : 2.5, alpha = cfg.prelu_init;
    const double p = 1 / (1 + std::exp(-(x[i] - rm) / std::sqrt(rv + cfg.dice_eps)));
    CHECK(y_infer[i] == Approx(x[i] * (alpha + p * (1 - alpha))).epsilon(1e-6));
  }
  // An empty training batch leaves the running averages alone.
  dice.forward(ctx, 0, x.data(), y.data(), true);
  CHECK(ps.to_host(ctx).at("d.running_mean") == state.at("d.running_mean"));
}

namespace {
data::Batch random_sparse_batch(int64_t rows, const std::vector<int>& max_ids, uint64_t seed,
                                int64_t num_dense = 0) {
  std::mt19937_64 rng(seed);
  data::Batch b;
  b.size = rows;
  for (int max_len : max_ids) {
    data::SparseColumn col;
    for (int64_t r = 0; r < rows; ++r) {
      const int len = static_cast<int>(rng() % (max_len + 1));
      for (int j = 0; j < len; ++j) col.keys.push_back(rng() % 13);  // few keys: collisions
      col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
    }
    b.sparse.push_back(col);
  }
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < rows * num_dense; ++i) b.dense.push_back(u(rng));
  for (int64_t r = 0; r < rows; ++r) {
    b.labels.push_back(static_cast<float>(rng() % 2));
    b.sample_ids.push_back(static_cast<uint64_t>(r));
  }
  return b;
}
}  // namespace

TEST_CASE("EmbeddingBagCollection: finite-difference gradients over shared tables",
          "[nn][embedding][gradcheck]") {
  Context ctx;
  using embedding::Pooling;
  // Table "item" (mean) is read by two fields; "ctx" (sum) by one; bags may be empty.
  std::vector<embedding::TableConfig> tables = {{"item", 7, 3, Pooling::Mean, 0.5f},
                                                {"ctx", 5, 2, Pooling::Sum, 0.5f}};
  std::vector<embedding::FieldConfig> fields = {
      {"target", "item"}, {"hist", "item"}, {"c0", "ctx"}};
  nn::OptimizerConfig opt{nn::OptimizerKind::Adagrad, 0.1f};
  embedding::EmbeddingBagCollection<double> emb(tables, fields, {"c0", "hist", "target"}, opt);
  emb.allocate(ctx, 3);
  REQUIRE(emb.output_width() == 3 + 3 + 2);
  const int64_t rows = 6, width = emb.output_width();
  const data::Batch batch = random_sparse_batch(rows, {3, 6, 1}, 9);
  const auto w = test::random_vector<double>(rows * width, 5);
  std::vector<double> out(rows * width);
  embedding::DeviceBatch<double> staged;
  emb.stage(ctx, batch, staged);
  const auto loss = [&] {
    emb.forward(ctx, staged, out.data(), width);
    return dot(out.data(), w);
  };
  loss();  // forward: the layer differentiates the batch of its last forward
  emb.backward(ctx, w.data(), width);
  for (auto& table : emb.tables()) {
    const int64_t dim = table.dim();
    // Scatter the sparse gradient into a dense one; every other row must have zero gradient.
    std::vector<double> dense(table.rows() * dim, 0.0);
    const int64_t u = *table.grad().count();
    REQUIRE(u > 0);
    for (int64_t k = 0; k < u; ++k) {
      const uint64_t row = table.grad().ids()[k];
      if (k > 0) REQUIRE(row > table.grad().ids()[k - 1]);  // ascending and unique
      for (int64_t d = 0; d < dim; ++d) dense[row * dim + d] = table.grad().rows()[k * dim + d];
    }
    test::check_gradient(table.config().name, loss, table.weights(), dense.data(),
                         table.rows() * dim, {}, 1e-6, 1e-6, 1e-9);
  }
}

TEST_CASE("EmbeddingBagCollection reports configuration errors by name",
          "[nn][embedding][errors]") {
  nn::OptimizerConfig opt{nn::OptimizerKind::Adagrad, 0.1f};
  std::vector<embedding::TableConfig> tables = {{"item", 7, 3}};
  CHECK_THROWS_WITH(
      embedding::EmbeddingBagCollection<float>(tables, {{"hist", "item"}}, {"user"}, opt),
      Contains("'hist'") && Contains("columns: user"));
  CHECK_THROWS_WITH(
      embedding::EmbeddingBagCollection<float>(tables, {{"user", "items"}}, {"user"}, opt),
      Contains("model.fields[0].table = 'items' is not a table"));
  std::vector<embedding::TableConfig> bad = {{"item", 0, 3}};
  CHECK_THROWS_WITH(
      embedding::EmbeddingBagCollection<float>(bad, {{"user", "item"}}, {"user"}, opt),
      Contains("rows = 0"));
}

TEST_CASE("BceWithLogits: summed loss and finite-difference gradient", "[nn][loss][gradcheck]") {
  Context ctx;
  nn::BceWithLogits<double> bce;
  auto z = test::random_vector<double>(9, 1, -4, 4);
  std::vector<double> y = {0, 1, 1, 0, 1, 0, 0, 1, 1}, dz(9);
  double sum = 0;
  const auto loss = [&] {
    bce.forward_backward(ctx, 9, z.data(), y.data(), 1.0, nullptr, &sum);
    return sum;
  };
  bce.forward_backward(ctx, 9, z.data(), y.data(), 1.0, dz.data(), &sum);
  double expected = 0;
  for (int i = 0; i < 9; ++i) {
    const double p = 1 / (1 + std::exp(-z[i]));
    expected -= y[i] * std::log(p) + (1 - y[i]) * std::log(1 - p);
  }
  CHECK(sum == Approx(expected).epsilon(1e-12));
  test::check_gradient("dlogits", loss, z.data(), dz.data(), 9);
}

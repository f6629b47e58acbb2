// BST: the transformer block and the whole BST model, with finite-difference gradient checks
// (double, CPU) at history lengths 0, 1 and max, batch size 1, every read-out, and dropout.
#include <catch2/catch.hpp>

#include "table_grad.h"
#include "data_test_util.h"
#include "gradcheck.h"
#include "lockstep/models/factory.h"
#include "lockstep/nn/loss.h"
#include "lockstep/nn/transformer.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

using test::trainable_indices;

TEST_CASE("Transformer block: finite-difference gradients with masking and dropout",
          "[bst][gradcheck]") {
  for (float dropout : {0.0f, 0.3f}) {
    for (auto lengths : {std::vector<int64_t>{4}, std::vector<int64_t>{0, 1, 4, 2}}) {
      const int64_t B = static_cast<int64_t>(lengths.size()), L = 4, d = 6;
      DYNAMIC_SECTION("dropout=" << dropout << " B=" << B) {
        Context ctx(Device::cpu(), ContextOptions{false, 0, 17});
        nn::ParamSet<double> ps;
        nn::TransformerConfig cfg;
        cfg.heads = 2;
        cfg.ffn_width = 5;
        cfg.leaky_slope = 0.1f;
        cfg.dropout = dropout;
        nn::TransformerBlock<double> block(ps, "blk", d, cfg);
        ps.allocate(ctx, 8);
        for (const auto& e : ps.entries())  // non-trivial LayerNorm and biases
          if (e.shape.size() == 1)
            for (int64_t i = 0; i < e.numel(); ++i) ps.values()[e.offset + i] += 0.05 * (i % 5) - 0.1;
        auto x = test::random_vector<double>(B * L * d, 3, -1.5, 1.5);
        const auto len_t = make_tensor(ctx, lengths);
        const auto w = test::random_vector<double>(B * L * d, 4);
        std::vector<double> y(B * L * d), dx(B * L * d);
        const auto loss = [&] {
          ctx.set_random_offset(0);  // the same dropout masks in every evaluation
          block.forward(ctx, B, L, len_t.data(), x.data(), y.data(), true);
          // Only valid positions are read, as in the model.
          double s = 0;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t < lengths[b]; ++t)
              for (int64_t j = 0; j < d; ++j) s += w[(b * L + t) * d + j] * y[(b * L + t) * d + j];
          return s;
        };
        ps.zero_grad(ctx);
        loss();
        std::vector<double> dy(B * L * d, 0.0);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < lengths[b]; ++t)
            for (int64_t j = 0; j < d; ++j) dy[(b * L + t) * d + j] = w[(b * L + t) * d + j];
        block.backward(ctx, dy.data(), dx.data());
        std::vector<double> grads(ps.grads(), ps.grads() + ps.size());
        // Finite differences carry ~1e-9 of rounding here (the key bias has an exactly zero true
        // gradient: softmax ignores a constant added to every score), so errors are measured
        // against a floor of 1e-3.
        test::check_gradient("parameters", loss, ps.values(), grads.data(), ps.size(),
                             trainable_indices(ps), 1e-6, 3e-6, 1e-3);
        test::check_gradient("input", loss, x.data(), dx.data(), B * L * d, {}, 1e-6, 3e-6, 1e-3);
        // Padding positions of x get no gradient through the masked attention.
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = lengths[b]; t < L; ++t)
            for (int64_t j = 0; j < d; ++j) CHECK(dx[(b * L + t) * d + j] == 0.0);
      }
    }
  }
}

namespace {
const std::vector<std::string> kColumns = {"item", "cat", "user", "hist", "hist_cat", "gap"};

data::Batch bst_batch(const std::vector<int64_t>& lengths, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  data::Batch b;
  b.size = static_cast<int64_t>(lengths.size());
  b.sparse.resize(6);
  for (int64_t r = 0; r < b.size; ++r) {
    for (int c = 0; c < 6; ++c) {
      const int64_t len = c >= 3 ? lengths[r] : 1;
      for (int64_t j = 0; j < len; ++j) b.sparse[c].keys.push_back(rng() % (c == 5 ? 4 : 40));
      b.sparse[c].offsets.push_back(static_cast<int64_t>(b.sparse[c].keys.size()));
    }
    for (int d = 0; d < 2; ++d) b.dense.push_back(u(rng));
    b.labels.push_back(static_cast<float>(rng() % 2));
    b.sample_ids.push_back(static_cast<uint64_t>(r));
  }
  return b;
}

models::BstConfig bst_config(models::BstOutput output, bool time_gap) {
  models::BstConfig c;
  c.tables = {{"item", 13, 2, embedding::Pooling::Mean, 0.5f},
              {"cat", 7, 2, embedding::Pooling::Mean, 0.5f},
              {"user", 5, 3, embedding::Pooling::Sum, 0.5f}};
  c.fields = {{"item", "item"}, {"cat", "cat"}, {"user", "user"},
              {"hist", "item", 3}, {"hist_cat", "cat", 3}};
  if (time_gap) {
    c.tables.push_back({"gap", 4, 4, embedding::Pooling::Sum, 0.5f});
    c.fields.push_back({"gap", "gap", 3});
    c.time_gap = "gap";
  }
  c.target = {"item", "cat"};
  c.sequence = {"hist", "hist_cat"};
  c.transformer.heads = 2;
  c.transformer.ffn_width = 3;
  c.output = output;
  c.mlp = {{5, 1}, {nn::ActivationKind::LeakyReLU}, false};
  c.mlp.activation.leaky_slope = 0.1f;
  c.seed = 6;
  return c;
}
}  // namespace

TEST_CASE("BST model: whole-model finite-difference gradient check for every read-out",
          "[bst][model][gradcheck]") {
  Context ctx;
  using O = models::BstOutput;
  for (auto [output, gap] : {std::pair{O::Target, false}, std::pair{O::Mean, false},
                             std::pair{O::Concat, false}, std::pair{O::Target, true}}) {
    for (auto lengths : {std::vector<int64_t>{2}, std::vector<int64_t>{0, 3, 1, 5}}) {
      DYNAMIC_SECTION(models::bst_output_name(output) << " time_gap=" << gap << " B=" << lengths.size()) {
        models::Bst<double> model(bst_config(output, gap), kColumns, 2, ctx);
        CHECK(model.tables().size() == (gap ? 4u : 3u));
        const data::Batch batch = bst_batch(lengths, 21);
        const std::vector<double> labels(batch.labels.begin(), batch.labels.end());
        nn::BceWithLogits<double> bce;
        std::vector<double> dlogits(batch.size);
        double loss_sum = 0;
        const auto loss = [&] {
          const double* z = model.forward(ctx, batch, true);
          bce.forward_backward(ctx, batch.size, z, labels.data(), 1.0, nullptr, &loss_sum);
          return loss_sum;
        };
        model.zero_grad(ctx);
        const double* z = model.forward(ctx, batch, true);
        bce.forward_backward(ctx, batch.size, z, labels.data(), 1.0, dlogits.data(), &loss_sum);
        model.backward(ctx, dlogits.data());
        auto& ps = model.dense_params();
        std::vector<double> analytic(ps.grads(), ps.grads() + ps.size());
        test::check_gradient("dense parameters", loss, ps.values(), analytic.data(), ps.size(),
                             trainable_indices(ps), 1e-6, 5e-6, 1e-3);
        for (auto* table : model.tables()) {
          const auto dense = test::dense_table_grad(*table);
          test::check_gradient(table->config().name, loss, table->weights(), dense.data(),
                               table->rows() * table->dim(), {}, 1e-6, 5e-6, 1e-3);
        }
      }
    }
  }
}

TEST_CASE("BST configuration loads from TOML and reports errors by file and line", "[bst][config]") {
  test::TempDir dir;
  const std::string good = R"([model]
kind = "bst"
[model.bst]
target = ["item", "cat"]
sequence = ["hist", "hist_cat"]
output = "mean"
blocks = 2
[model.bst.transformer]
heads = 2
ffn_width = 8
dropout = 0.1
[model.mlp]
widths = [16, 1]
activation = "leaky_relu"
[[model.tables]]
name = "item"
rows = 100
dim = 4
[[model.tables]]
name = "cat"
rows = 10
dim = 4
[[model.fields]]
column = "item"
table = "item"
[[model.fields]]
column = "cat"
table = "cat"
[[model.fields]]
column = "hist"
table = "item"
max_len = 5
[[model.fields]]
column = "hist_cat"
table = "cat"
max_len = 5
)";
  const auto c = models::load_bst_config(dir.write("bst.toml", good));
  CHECK(c.output == models::BstOutput::Mean);
  CHECK(c.blocks == 2);
  CHECK(c.transformer.heads == 2);
  CHECK(c.transformer.dropout == Approx(0.1));
  Context ctx;
  const std::vector<std::string> columns = {"item", "cat", "hist", "hist_cat"};
  CHECK(models::load_model<float>(dir.file("bst.toml"), columns, 0, ctx)->name() == "bst");
  const auto bad = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return dir.write("bad.toml", text);
  };
  CHECK_THROWS_WITH(models::load_bst_config(bad("output = \"mean\"", "output = \"last\"")),
                    Contains("bad.toml:6") && Contains("model.bst.output = 'last'"));
  CHECK_THROWS_WITH(models::load_bst_config(bad("dropout = 0.1", "dropout = 1.5")),
                    Contains("bad.toml:11") && Contains("model.bst.transformer.dropout = 1.5"));
  CHECK_THROWS_WITH(models::load_model<float>(bad("heads = 2", "heads = 3"), columns, 0, ctx),
                    Contains("heads = 3 does not divide the model width 8"));
}

// Behaviour sequences and DIN: the sequence gather of EmbeddingBagCollection, the DIN attention
// layer and the whole DIN model, with finite-difference gradient checks (double, CPU) at history
// lengths 0, 1 and max and batch size 1.
#include <catch2/catch.hpp>

#include "table_grad.h"
#include "data_test_util.h"
#include "gradcheck.h"
#include "lockstep/models/factory.h"
#include "lockstep/nn/din_attention.h"
#include "lockstep/nn/loss.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
/// Columns: user, item, hist (ids oldest first); `lengths` gives each sample's history length.
data::Batch history_batch(const std::vector<int64_t>& lengths, uint64_t seed, int64_t num_dense = 2) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  data::Batch b;
  b.size = static_cast<int64_t>(lengths.size());
  b.sparse.resize(4);
  for (int64_t r = 0; r < b.size; ++r) {
    for (int c = 0; c < 4; ++c) {
      const int64_t len = c >= 2 ? lengths[r] : 1;  // hist and hist_cat share the length
      for (int64_t j = 0; j < len; ++j) b.sparse[c].keys.push_back(rng() % 50);
      b.sparse[c].offsets.push_back(static_cast<int64_t>(b.sparse[c].keys.size()));
    }
    for (int64_t d = 0; d < num_dense; ++d) b.dense.push_back(u(rng));
    b.labels.push_back(static_cast<float>(rng() % 2));
    b.sample_ids.push_back(static_cast<uint64_t>(r));
  }
  return b;
}
const std::vector<std::string> kColumns = {"item", "cat", "hist", "hist_cat"};

std::vector<embedding::TableConfig> small_tables() {
  return {{"item", 13, 3, embedding::Pooling::Mean, 0.5f}, {"cat", 7, 2, embedding::Pooling::Sum, 0.5f}};
}
}  // namespace

TEST_CASE("Sequence fields gather newest first, truncate to max_len and pad with zeros",
          "[din][embedding]") {
  Context ctx;
  nn::OptimizerConfig opt{nn::OptimizerKind::Adagrad, 0.1f};
  embedding::EmbeddingBagCollection<double> emb(
      small_tables(), {{"item", "item"}, {"hist", "item", 3}, {"hist_cat", "cat", 3}}, kColumns, opt);
  emb.allocate(ctx, 1);
  REQUIRE(emb.output_width() == 3);
  REQUIRE(emb.sequence_width() == 5);
  REQUIRE(emb.sequence_length() == 3);
  data::Batch batch = history_batch({0, 2, 5}, 4);
  embedding::DeviceBatch<double> staged;
  emb.stage(ctx, batch, staged);
  CHECK(staged.host_lengths() == std::vector<int64_t>{0, 2, 3});
  std::vector<double> pooled(3 * 3), seq(3 * 3 * 5, 42.0);
  emb.forward(ctx, staged, pooled.data(), 3, seq.data(), 5);
  const auto& item = emb.tables()[0];
  const auto& cat = emb.tables()[1];
  for (int64_t b = 0; b < 3; ++b) {
    const auto& hist = batch.sparse[2];
    const auto& hist_cat = batch.sparse[3];
    const int64_t n = hist.offsets[b + 1] - hist.offsets[b];
    for (int64_t p = 0; p < 3; ++p) {
      const double* row = seq.data() + (b * 3 + p) * 5;
      if (p >= std::min<int64_t>(n, 3)) {
        for (int d = 0; d < 5; ++d) CHECK(row[d] == 0.0);  // padding
        continue;
      }
      // Position p holds the p-th most recent id: the (n-1-p)-th of the oldest-first column.
      const uint64_t r_item = item.row_of(hist.keys[hist.offsets[b] + n - 1 - p]);
      const uint64_t r_cat = cat.row_of(hist_cat.keys[hist_cat.offsets[b] + n - 1 - p]);
      for (int d = 0; d < 3; ++d) CHECK(row[d] == item.weights()[r_item * 3 + d]);
      for (int d = 0; d < 2; ++d) CHECK(row[3 + d] == cat.weights()[r_cat * 2 + d]);
    }
  }
  // Sequence fields must agree on the length of every sample.
  batch.sparse[3].keys.push_back(1);
  batch.sparse[3].offsets.back() += 1;
  CHECK_THROWS_WITH(emb.stage(ctx, batch, staged), Contains("sample 2") && Contains("'hist_cat'"));
  CHECK_THROWS_WITH(
      embedding::EmbeddingBagCollection<double>(
          small_tables(), {{"item", "item"}, {"hist", "item", 3}, {"hist_cat", "cat", 4}}, kColumns,
          opt),
      Contains("model.fields[2].max_len = 4") && Contains("share one length"));
}

TEST_CASE("Sequence gather: finite-difference gradients through a table shared with a pooled field",
          "[din][embedding][gradcheck]") {
  Context ctx;
  nn::OptimizerConfig opt{nn::OptimizerKind::Adagrad, 0.1f};
  embedding::EmbeddingBagCollection<double> emb(
      small_tables(), {{"item", "item"}, {"hist", "item", 4}, {"hist_cat", "cat", 4}}, kColumns, opt);
  emb.allocate(ctx, 2);
  const data::Batch batch = history_batch({3, 0, 6, 1}, 9);
  embedding::DeviceBatch<double> staged;
  emb.stage(ctx, batch, staged);
  const auto wp = test::random_vector<double>(4 * 3, 1), ws = test::random_vector<double>(4 * 4 * 5, 2);
  std::vector<double> pooled(4 * 3), seq(4 * 4 * 5);
  const auto loss = [&] {
    emb.forward(ctx, staged, pooled.data(), 3, seq.data(), 5);
    return test::project(wp, pooled) + test::project(ws, seq);
  };
  loss();  // forward: the layer differentiates the batch of its last forward
  emb.backward(ctx, wp.data(), 3, ws.data(), 5);
  for (auto& table : emb.tables()) {
    const auto dense = test::dense_table_grad(table);
    test::check_gradient(table.config().name, loss, table.weights(), dense.data(),
                         table.rows() * table.dim(), {}, 1e-6, 1e-6, 1e-9);
  }
}

TEST_CASE("DIN attention: finite-difference gradients for lengths 0, 1 and max", "[din][gradcheck]") {
  Context ctx;
  using K = nn::ActivationKind;
  for (K act : {K::PReLU, K::Dice, K::Sigmoid}) {
    for (bool softmax : {false, true}) {
      for (auto lengths : {std::vector<int64_t>{3}, std::vector<int64_t>{0, 1, 4, 2, 4}}) {
        const int64_t B = static_cast<int64_t>(lengths.size()), Tn = 4, D = 3;
        if (act == K::Dice && B == 1) continue;  // batch statistics of one row are constant
        DYNAMIC_SECTION(nn::activation_name(act) << " softmax=" << softmax << " B=" << B) {
          nn::ParamSet<double> ps;
          nn::DinAttentionConfig cfg;
          cfg.hidden = {5, 4};
          cfg.activation.kind = act;
          cfg.softmax = softmax;
          nn::DinAttention<double> att(ps, "din", D, cfg);
          ps.allocate(ctx, 3);
          for (const auto& e : ps.entries())  // non-zero biases and spread alphas
            if (e.trainable && e.shape.size() == 1)
              for (int64_t i = 0; i < e.numel(); ++i) ps.values()[e.offset + i] = 0.1 + 0.07 * i;
          // q inside a wider matrix (ld 5), k with ld 4 per position.
          auto q = test::random_vector<double>(B * 5, 4), k = test::random_vector<double>(B * Tn * 4, 5);
          const auto len_t = make_tensor(ctx, lengths);
          const auto w = test::random_vector<double>(B * 6, 6);
          std::vector<double> out(B * 6, 0.0), dq(B * 5, 0.0), dk(B * Tn * 4, 0.0);
          const auto loss = [&] {
            att.forward(ctx, B, Tn, q.data(), 5, k.data(), 4, len_t.data(), out.data(), 6, true);
            return test::project(w, out);
          };
          ps.zero_grad(ctx);
          loss();
          att.backward(ctx, w.data(), 6, dq.data(), 5, dk.data(), 4);
          std::vector<int64_t> trainable;
          for (const auto& e : ps.entries())
            if (e.trainable)
              for (int64_t i = 0; i < e.numel(); ++i) trainable.push_back(e.offset + i);
          std::vector<double> grads(ps.grads(), ps.grads() + ps.size());
          // Finite differences carry ~1e-10 of rounding: errors are measured against a 1e-4 floor.
          test::check_gradient("parameters", loss, ps.values(), grads.data(), ps.size(), trainable,
                               1e-6, 2e-6, 1e-4);
          std::vector<int64_t> q_idx, k_idx;  // only the real columns (the rest is not read)
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t d = 0; d < D; ++d) q_idx.push_back(b * 5 + d);
            for (int64_t t = 0; t < Tn; ++t)
              for (int64_t d = 0; d < D; ++d) k_idx.push_back((b * Tn + t) * 4 + d);
          }
          test::check_gradient("query", loss, q.data(), dq.data(), B * 5, q_idx, 1e-6, 2e-6, 1e-4);
          test::check_gradient("keys", loss, k.data(), dk.data(), B * Tn * 4, k_idx, 1e-6, 2e-6, 1e-4);
          // Padding positions get exactly zero gradient — except through Dice, whose batch
          // statistics include every row (padding too, as in the reference implementation; in
          // the model padding keys are zero rows and the gather discards their gradient).
          if (act != K::Dice)
            for (int64_t b = 0; b < B; ++b)
              for (int64_t t = lengths[b]; t < Tn; ++t)
                for (int64_t d = 0; d < D; ++d) CHECK(dk[(b * Tn + t) * 4 + d] == 0.0);
          for (int64_t b = 0; b < B; ++b)
            if (lengths[b] == 0)
              for (int64_t d = 0; d < D; ++d) CHECK(out[b * 6 + d] == 0.0);
        }
      }
    }
  }
}

namespace {
models::DinConfig din_config(nn::ActivationKind act) {
  models::DinConfig c;
  c.tables = small_tables();
  c.fields = {{"item", "item"}, {"cat", "cat"}, {"hist", "item", 4}, {"hist_cat", "cat", 4}};
  c.query = {"item", "cat"};
  c.keys = {"hist", "hist_cat"};
  c.attention.hidden = {6, 3};
  c.attention.activation.kind = act;
  c.mlp = {{7, 1}, {act}, false};
  c.seed = 4;
  return c;
}
}  // namespace

TEST_CASE("DIN model: whole-model finite-difference gradient check", "[din][model][gradcheck]") {
  Context ctx;
  for (auto act : {nn::ActivationKind::PReLU, nn::ActivationKind::Dice}) {
    for (auto lengths : {std::vector<int64_t>{2}, std::vector<int64_t>{0, 4, 1, 6, 3}}) {
      if (act == nn::ActivationKind::Dice && lengths.size() == 1) continue;
      DYNAMIC_SECTION(nn::activation_name(act) << " B=" << lengths.size()) {
        models::Din<double> model(din_config(act), kColumns, 2, ctx);
        const data::Batch batch = history_batch(lengths, 11);
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
        const auto trainable = test::trainable_indices(ps);
        test::check_gradient("dense parameters", loss, ps.values(), analytic.data(), ps.size(),
                             trainable, 1e-6, 5e-6, 1e-3);
        for (auto* table : model.tables()) {
          const auto dense = test::dense_table_grad(*table);
          test::check_gradient(table->config().name, loss, table->weights(), dense.data(),
                               table->rows() * table->dim(), {}, 1e-6, 5e-6, 1e-3);
        }
      }
    }
  }
}

TEST_CASE("DIN configuration loads from TOML and reports errors by file and line", "[din][config]") {
  test::TempDir dir;
  const std::string good = R"(seed = 2
[model]
kind = "din"
[model.din]
query = ["item", "cat"]
keys = ["hist", "hist_cat"]
[model.din.attention]
hidden = [8, 4]
activation = "dice"
softmax = true
[model.mlp]
widths = [16, 1]
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
  const auto c = models::load_din_config(dir.write("din.toml", good));
  CHECK(c.attention.hidden == std::vector<int64_t>{8, 4});
  CHECK(c.attention.activation.kind == nn::ActivationKind::Dice);
  CHECK(c.attention.softmax);
  CHECK(c.fields[2].max_len == 5);
  CHECK(models::model_kind(dir.file("din.toml")) == "din");
  Context ctx;
  const auto model = models::load_model<float>(dir.file("din.toml"), kColumns, 2, ctx);
  CHECK(model->name() == "din");

  const auto bad = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return dir.write("bad.toml", text);
  };
  CHECK_THROWS_WITH(models::load_din_config(bad("hidden = [8, 4]", "hidden = [8, 0]")),
                    Contains("bad.toml:8") && Contains("model.din.attention.hidden[1] = 0"));
  CHECK_THROWS_WITH(models::load_din_config(bad("softmax = true", "sofmax = true")),
                    Contains("bad.toml:10") && Contains("unknown key model.din.attention.sofmax"));
  CHECK_THROWS_WITH(models::load_din_config(bad("max_len = 5\n[[model.fields]]", "max_len = -1\n[[model.fields]]")),
                    Contains("bad.toml:30") && Contains("max_len = -1"));
  CHECK_THROWS_WITH(models::load_din_config(bad("kind = \"din\"", "kind = \"dien\"")),
                    Contains("bad.toml:3") && Contains("'dien' is not a model"));
  // A configuration without model.kind is an embedding_mlp: the DIN reader says so (it used to
  // dereference the missing key; found by fuzz/model_config.cpp).
  CHECK_THROWS_WITH(
      models::load_din_config(bad("kind = \"din\"\n", "")),
      Contains("bad.toml:2") && Contains("expected din here") && Contains("model.kind is not set"));
  // The same readers over text in memory.
  CHECK(models::parse_din_config(good, "mem").attention.hidden == std::vector<int64_t>{8, 4});
  CHECK(models::parse_model_kind(good) == "din");
  CHECK_THROWS_WITH(models::parse_bst_config(good, "mem"),
                    Contains("mem:3") && Contains("expected bst here"));
  CHECK_THROWS_WITH(models::parse_din_config("[model\n", "mem"), Contains("mem:1:"));
  CHECK_THROWS_WITH(models::load_model<float>(bad("keys = [\"hist\", \"hist_cat\"]", "keys = [\"hist_cat\", \"hist\"]"), kColumns, 2, ctx),
                    Contains("same width") || Contains("consecutive"));
}

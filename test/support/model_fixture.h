#pragma once
// A small EmbeddingMlp and batches with globally unique sample ids, shared by the model, trainer,
// GPU parity and multi-rank tests.

#include <xxhash.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/models/embedding_mlp.h"

namespace lockstep::test {

inline const std::vector<std::string>& fixture_columns() {
  static const std::vector<std::string> columns = {"user", "item", "hist"};
  return columns;
}

/// Tables "user" (sum pooling) and "item" (mean; read by the target item and the history),
/// three dense features, MLP 16 -> 8 -> 1.
inline models::EmbeddingMlpConfig fixture_config(nn::ActivationKind act = nn::ActivationKind::PReLU,
                                                 int64_t user_rows = 101, int64_t item_rows = 257) {
  models::EmbeddingMlpConfig c;
  c.tables = {{"user", user_rows, 4, embedding::Pooling::Sum, 0.1f},
              {"item", item_rows, 8, embedding::Pooling::Mean, 0.1f}};
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item"}};
  c.mlp = {{16, 8, 1}, {act}, false};
  c.seed = 5;
  return c;
}

inline std::unique_ptr<models::EmbeddingMlp<float>> fixture_model(
    const Context& ctx, nn::ActivationKind act = nn::ActivationKind::PReLU) {
  return std::make_unique<models::EmbeddingMlp<float>>(fixture_config(act), fixture_columns(), 3,
                                                       ctx);
}

/// The fixture's tables made dynamic (issue 13): capacities `user_capacity` / `item_capacity`
/// (the fixture's keys are < 500: a smaller capacity makes the tables evict), `accessor` rules.
inline void make_dynamic(std::vector<embedding::TableConfig>& tables,
                         const embedding::AccessorConfig& accessor, int64_t user_capacity = 600,
                         int64_t item_capacity = 600) {
  for (auto& t : tables) {
    t.kind = embedding::TableKind::Dynamic;
    t.rows = t.name == "user" ? user_capacity : item_capacity;
    t.accessor = accessor;
  }
}

template <class T = float>
std::unique_ptr<models::EmbeddingMlp<T>> fixture_dynamic_model(
    const Context& ctx, const embedding::AccessorConfig& accessor, int64_t user_capacity = 600,
    int64_t item_capacity = 600) {
  auto c = fixture_config();
  make_dynamic(c.tables, accessor, user_capacity, item_capacity);
  return std::make_unique<models::EmbeddingMlp<T>>(c, fixture_columns(), 3, ctx);
}

/// The fixture's data read by DIN: the target item attends over the history (a sequence of up to
/// 4 positions: longer histories are truncated).
/// `dynamic`: the tables made dynamic with these rules (make_dynamic), each of `capacity`.
inline std::unique_ptr<models::Din<float>> fixture_din(
    const Context& ctx, const embedding::AccessorConfig* dynamic = nullptr,
    int64_t capacity = 600) {
  models::DinConfig c;
  const auto base = fixture_config();
  c.tables = base.tables;
  if (dynamic) make_dynamic(c.tables, *dynamic, capacity, capacity);
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item", 4}};
  c.query = {"item"};
  c.keys = {"hist"};
  c.attention.hidden = {8, 4};
  c.mlp = {{16, 8, 1}, {nn::ActivationKind::PReLU}, false};
  c.seed = 5;
  return std::make_unique<models::Din<float>>(c, fixture_columns(), 3, ctx);
}

/// The same read by BST (target token + history, 2 heads over the 8-wide item embeddings).
/// `dynamic`: the tables made dynamic with these rules (make_dynamic), each of `capacity`.
inline std::unique_ptr<models::Bst<float>> fixture_bst(
    const Context& ctx, const embedding::AccessorConfig* dynamic = nullptr, float dropout = 0.1f,
    int64_t capacity = 600) {
  models::BstConfig c;
  const auto base = fixture_config();
  c.tables = base.tables;
  if (dynamic) make_dynamic(c.tables, *dynamic, capacity, capacity);
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item", 4}};
  c.target = {"item"};
  c.sequence = {"hist"};
  c.transformer.heads = 2;
  c.transformer.ffn_width = 8;
  c.transformer.dropout = dropout;
  c.mlp = {{16, 8, 1}, {nn::ActivationKind::LeakyReLU}, false};
  c.seed = 5;
  return std::make_unique<models::Bst<float>>(c, fixture_columns(), 3, ctx);
}

/// The fixture's data read by a dual DNN: teacher = DIN over the history + cross network,
/// student = MLP over the pooled fields (the history mean-pooled).
/// `dynamic`: the tables made dynamic with these rules (make_dynamic, each of `capacity`; no
/// student residual tables).
inline models::DualConfig fixture_dual_config(models::DualMode mode = models::DualMode::Joint,
                                              const embedding::AccessorConfig* dynamic = nullptr,
                                              int64_t capacity = 600) {
  models::DualConfig c;
  c.mode = mode;
  const auto base = fixture_config();
  c.tables = base.tables;
  if (dynamic) {
    make_dynamic(c.tables, *dynamic, capacity, capacity);
    c.student_residual = false;
  }
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item"}, {"hist", "item", 4}};
  c.components = {"din", "cross"};
  c.din_query = {"item"};
  c.din_keys = {"hist"};
  c.din_attention.hidden = {8, 4};
  c.cross_layers = 2;
  c.teacher_mlp = {{16, 8, 1}, {nn::ActivationKind::Dice}, false};
  c.student_mlp = {{8, 4, 1}, {nn::ActivationKind::PReLU}, false};
  c.seed = 5;
  return c;
}

inline std::unique_ptr<models::DualDnn<float>> fixture_dual(
    const Context& ctx, models::DualMode mode = models::DualMode::Joint,
    const embedding::AccessorConfig* dynamic = nullptr) {
  return std::make_unique<models::DualDnn<float>>(fixture_dual_config(mode, dynamic),
                                                  fixture_columns(), 3, ctx);
}

/// A batch of `rows` samples with ids first_id .. first_id + rows - 1, content determined by the
/// ids (so any rank can rebuild any other rank's batches). Histories hold 0..max_history ids, so
/// some are empty.
inline data::Batch fixture_batch(uint64_t first_id, int64_t rows, int max_history = 5) {
  data::Batch b;
  b.size = rows;
  b.sparse.resize(3);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t id = first_id + static_cast<uint64_t>(r);
    std::mt19937_64 rng(id * 7919 + 1);
    for (int c = 0; c < 3; ++c) {
      const int len = c == 2 ? static_cast<int>(rng() % (max_history + 1)) : 1;
      for (int j = 0; j < len; ++j) b.sparse[c].keys.push_back(rng() % 500);
      b.sparse[c].offsets.push_back(static_cast<int64_t>(b.sparse[c].keys.size()));
    }
    std::uniform_real_distribution<float> u(-1, 1);
    for (int d = 0; d < 3; ++d) b.dense.push_back(u(rng));
    b.labels.push_back(static_cast<float>(rng() % 3 == 0));
    b.sample_ids.push_back(id);
  }
  return b;
}

/// `n` consecutive fixture batches of `rows` samples, ids from `first_id` on.
inline std::vector<data::Batch> fixture_batches(int n, int64_t rows, uint64_t first_id = 0) {
  std::vector<data::Batch> out;
  for (int i = 0; i < n; ++i) out.push_back(fixture_batch(first_id + i * rows, rows));
  return out;
}

/// Concatenation of batches (the "union of a step's batches", in rank order).
inline data::Batch concat(const std::vector<data::Batch>& parts) {
  data::Batch out;
  out.sparse.resize(3);
  for (const auto& p : parts) {
    for (int c = 0; c < 3; ++c) {
      const int64_t base = static_cast<int64_t>(out.sparse[c].keys.size());
      for (size_t i = 1; i < p.sparse[c].offsets.size(); ++i)
        out.sparse[c].offsets.push_back(base + p.sparse[c].offsets[i]);
      out.sparse[c].keys.insert(out.sparse[c].keys.end(), p.sparse[c].keys.begin(),
                                p.sparse[c].keys.end());
    }
    out.dense.insert(out.dense.end(), p.dense.begin(), p.dense.end());
    out.labels.insert(out.labels.end(), p.labels.begin(), p.labels.end());
    out.sample_ids.insert(out.sample_ids.end(), p.sample_ids.begin(), p.sample_ids.end());
    out.size += p.size;
  }
  return out;
}

/// Every parameter and table value of a model (no optimizer state), in a fixed order.
inline std::vector<float> all_parameters(const Context& ctx, models::Model<float>& m) {
  std::vector<float> out;
  for (const auto& [name, v] : m.dense_params().to_host(ctx)) out.insert(out.end(), v.begin(), v.end());
  for (auto* t : m.tables())
    for (const auto& [name, v] : t->to_host(ctx)) out.insert(out.end(), v.begin(), v.end());
  return out;
}

/// Every parameter, optimizer state and table value of a model, in a fixed order.
inline std::vector<float> all_state(const Context& ctx, models::Model<float>& m) {
  std::vector<float> out;
  for (const auto& [name, v] : m.dense_params().to_host(ctx)) out.insert(out.end(), v.begin(), v.end());
  for (auto& [name, t] : m.dense_optimizer().state()) {
    const auto v = to_host(ctx, *t);
    out.insert(out.end(), v.begin(), v.end());
  }
  for (auto* t : m.tables())
    for (const auto& [name, v] : t->to_host(ctx)) out.insert(out.end(), v.begin(), v.end());
  return out;
}

inline uint64_t state_hash(const Context& ctx, models::Model<float>& m) {
  const auto v = all_state(ctx, m);
  return XXH64(v.data(), v.size() * sizeof(float), 0);
}

}  // namespace lockstep::test

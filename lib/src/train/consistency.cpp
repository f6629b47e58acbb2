#include "train/consistency.h"

#include <xxhash.h>

#include <utility>
#include <vector>


namespace lockstep::train {

namespace {
uint64_t hash_bytes(const void* data, size_t n, uint64_t seed = 0) { return XXH64(data, n, seed); }
uint64_t hash_string(const std::string& s) { return hash_bytes(s.data(), s.size()); }

/// One thing every rank must agree on: its hash travels; its text (when it has one) travels only
/// when the hashes differ, to name the difference.
struct Part {
  std::string what;
  uint64_t hash = 0;
  std::string text;  // "key=value" lines, or "" (hash only)
  bool in_config_hash = true;
};

std::vector<std::pair<std::string, std::string>> key_values(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    const size_t eq = line.find('=');
    if (!line.empty())
      out.emplace_back(eq == std::string::npos ? line : line.substr(0, eq),
                       eq == std::string::npos ? "" : line.substr(eq + 1));
    at = end + 1;
  }
  return out;
}

/// The first key whose value differs between two "key=value" texts, e.g.
/// "resume: 'true' on rank 1, 'false' on rank 0".
std::string first_difference(const std::string& a, int rank_a, const std::string& b, int rank_b) {
  const auto kv_a = key_values(a), kv_b = key_values(b);
  const auto value_in = [](const auto& kv, const std::string& key) -> std::string {
    for (const auto& [k, v] : kv)
      if (k == key) return "'" + v + "'";
    return "(absent)";
  };
  for (const auto* kv : {&kv_a, &kv_b})
    for (const auto& [key, unused] : *kv) {
      const std::string va = value_in(kv_a, key), vb = value_in(kv_b, key);
      if (va != vb) return fmt::format("{}: {} on rank {}, {} on rank {}", key, va, rank_a, vb, rank_b);
    }
  return "the same keys and values in another order";
}
}  // namespace

uint64_t check_startup_consistency(HostCollectives& host, const Context& ctx,
                                   models::Model<float>& model, const std::string& run_config,
                                   const std::string& settings) {
  std::vector<Part> parts;
  parts.push_back({"model", hash_string(model.name()), "model=" + model.name()});
  parts.push_back({"dense parameter layout", model.dense_params().layout_hash(), ""});
  std::string tables_text;
  for (auto* t : model.tables()) {
    const auto& c = t->config();
    tables_text += fmt::format("table {}=rows {}, dim {}, pooling {}, init_scale {}{}\n", c.name,
                               c.rows, c.dim, embedding::pooling_name(c.pooling), c.init_scale,
                               c.identity ? ", ids identity" : "");
  }
  parts.push_back({"embedding tables", hash_string(tables_text), tables_text});
  parts.push_back({"run configuration", hash_string(run_config), run_config});
  parts.push_back({"trainer settings", hash_string(settings), settings, false});
  const auto values = to_host(ctx, model.dense_params().values(), model.dense_params().size());
  parts.push_back({"initial dense parameters (seed?)",
                   hash_bytes(values.data(), values.size() * sizeof(float)), "", false});

  const int ranks = host.size();
  const size_t k = parts.size();
  std::vector<uint64_t> mine;
  for (const auto& p : parts) mine.push_back(p.hash);
  const auto all = host.all_gather_u64(mine);  // every rank sees every hash: the same verdict
  const auto value = [&](int r, size_t i) { return all[r * k + i]; };
  for (size_t i = 0; i < k; ++i) {
    std::vector<int> differ;
    for (int r = 1; r < ranks; ++r)
      if (value(r, i) != value(0, i)) differ.push_back(r);
    if (differ.empty()) continue;
    std::string detail = fmt::format("{:016x} vs {:016x}", value(differ[0], i), value(0, i));
    if (!parts[i].text.empty()) {  // collective: every rank takes this branch for the same i
      const auto texts = host.all_gather_text(parts[i].text, 1 << 16);
      detail = first_difference(texts[differ[0]], differ[0], texts[0], 0);
    }
    throw JobError(fmt::format("ranks disagree at start-up: the {} of rank(s) {} differs from "
                               "rank 0's ({}); start every rank with the same model, "
                               "configuration and flags",
                               parts[i].what, fmt::join(differ, ", "), detail));
  }
  uint64_t h = 0;
  for (const auto& p : parts)
    if (p.in_config_hash) h = hash_bytes(&p.hash, sizeof(uint64_t), h);
  return h;
}

}  // namespace lockstep::train

namespace lockstep::train {

uint64_t model_state_hash(const Context& ctx, models::Model<float>& model) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  const auto add = [&](const std::vector<float>& v) {
    XXH64_update(state, v.data(), v.size() * sizeof(float));
  };
  add(to_host(ctx, model.dense_params().values(), model.dense_params().size()));
  for (auto& [name, tensor] : model.dense_optimizer().state()) add(to_host(ctx, *tensor));
  for (auto* table : model.tables())
    for (const auto& [name, values] : table->to_host(ctx)) add(values);  // std::map: name order
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return h;
}

}  // namespace lockstep::train

#include "train/consistency.h"

#include <xxhash.h>

#include <cstdint>
#include <map>
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

/// The "key=value" lines of `text`; a key seen before gets " (#n)" for its n-th occurrence, so
/// that lists (one "--train file" line per file) compare entry by entry.
std::vector<std::pair<std::string, std::string>> key_values(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::map<std::string, int> seen;
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    const size_t eq = line.find('=');
    if (!line.empty()) {
      std::string key = eq == std::string::npos ? line : line.substr(0, eq);
      if (const int n = ++seen[key]; n > 1) key += fmt::format(" (#{})", n);
      out.emplace_back(std::move(key), eq == std::string::npos ? "" : line.substr(eq + 1));
    }
    at = end + 1;
  }
  return out;
}

std::string table_lines(models::Model<float>& model) {
  std::string text;
  for (auto* t : model.tables()) {
    const auto& c = t->config();
    text += fmt::format("table {}=rows {}, dim {}, pooling {}, init_scale {}{}\n", c.name, c.rows,
                        c.dim, embedding::pooling_name(c.pooling), c.init_scale,
                        c.identity ? ", ids identity" : "");
  }
  return text;
}
}  // namespace

std::string describe_difference(const std::string& a, const std::string& where_a,
                                const std::string& b, const std::string& where_b) {
  const auto kv_a = key_values(a), kv_b = key_values(b);
  const auto value_in = [](const auto& kv, const std::string& key) -> std::string {
    for (const auto& [k, v] : kv)
      if (k == key) return "'" + v + "'";
    return "(absent)";
  };
  // The key that differs earliest in either text (a key only one text has counts too).
  std::string first_key;
  size_t first_at = SIZE_MAX;
  for (const auto* kv : {&kv_a, &kv_b})
    for (size_t i = 0; i < kv->size() && i < first_at; ++i) {
      const std::string& key = (*kv)[i].first;
      if (value_in(kv_a, key) != value_in(kv_b, key)) {
        first_key = key;
        first_at = i;
      }
    }
  if (first_at == SIZE_MAX) return "the same keys and values in another order";
  return fmt::format("{}: {} {}, {} {}", first_key, value_in(kv_a, first_key), where_a,
                     value_in(kv_b, first_key), where_b);
}

std::string config_text(models::Model<float>& model, const std::string& run_config) {
  // The run's flags and configuration first: what a user changed shows before its effects.
  std::string text = run_config;
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text + fmt::format("model={}\ndense parameter layout={:016x}\n{}", model.name(),
                            model.dense_params().layout_hash(), table_lines(model));
}

uint64_t check_startup_consistency(HostCollectives& host, const Context& ctx,
                                   models::Model<float>& model, const std::string& run_config,
                                   const std::string& settings) {
  std::vector<Part> parts;
  parts.push_back({"model", hash_string(model.name()), "model=" + model.name()});
  parts.push_back({"dense parameter layout", model.dense_params().layout_hash(), ""});
  const std::string tables_text = table_lines(model);
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
      detail = describe_difference(texts[differ[0]], fmt::format("on rank {}", differ[0]), texts[0],
                                   "on rank 0");
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

#include "train/consistency.h"

#include <xxhash.h>

#include <utility>
#include <vector>


namespace lockstep::train {

namespace {
uint64_t hash_bytes(const void* data, size_t n, uint64_t seed = 0) { return XXH64(data, n, seed); }
uint64_t hash_string(const std::string& s) { return hash_bytes(s.data(), s.size()); }
}  // namespace

uint64_t check_startup_consistency(HostCollectives& host, const Context& ctx,
                                   models::Model<float>& model, const std::string& run_config) {
  std::vector<std::pair<std::string, uint64_t>> parts;
  parts.emplace_back("model", hash_string(model.name()));
  parts.emplace_back("dense parameter layout", model.dense_params().layout_hash());
  std::string tables_text;
  for (auto* t : model.tables()) {
    const auto& c = t->config();
    tables_text += fmt::format("{}:{}:{}:{}:{};", c.name, c.rows, c.dim,
                               embedding::pooling_name(c.pooling), c.init_scale);
  }
  parts.emplace_back("embedding tables", hash_string(tables_text));
  parts.emplace_back("run configuration", hash_string(run_config));
  const auto values = to_host(ctx, model.dense_params().values(), model.dense_params().size());
  parts.emplace_back("initial dense parameters (seed?)",
                     hash_bytes(values.data(), values.size() * sizeof(float)));
  const int ranks = host.size();
  const size_t k = parts.size();
  std::vector<uint64_t> mine;
  for (const auto& p : parts) mine.push_back(p.second);
  const auto all = host.all_gather_u64(mine);
  const auto value = [&](int r, size_t i) { return all[r * k + i]; };
  for (size_t i = 0; i < k; ++i) {
    std::vector<int> differ;
    for (int r = 1; r < ranks; ++r)
      if (value(r, i) != value(0, i)) differ.push_back(r);
    LOCKSTEP_CHECK(differ.empty(),
                   "ranks disagree at start-up: the {} of rank(s) {} differs from rank 0's "
                   "({:016x} vs {:016x}); start every rank with the same model, configuration "
                   "and flags",
                   parts[i].first, fmt::join(differ, ", "), value(differ.empty() ? 0 : differ[0], i),
                   value(0, i));
  }
  uint64_t h = 0;
  for (size_t i = 0; i + 1 < k; ++i) h = hash_bytes(&parts[i].second, sizeof(uint64_t), h);
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

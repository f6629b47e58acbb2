#include "lockstep/train/collisions.h"

#include <algorithm>
#include <unordered_set>

#include "lockstep/core/error.h"

namespace lockstep::train {

template <class T>
std::vector<TableCollisions> count_collisions(models::EmbeddingModel<T>& model,
                                              const std::vector<std::string>& columns,
                                              const std::vector<std::vector<uint64_t>>& keys_of_column,
                                              bool exact) {
  LOCKSTEP_CHECK(columns.size() == keys_of_column.size(), "{} column names for {} key lists",
                 columns.size(), keys_of_column.size());
  std::vector<TableCollisions> out;
  const auto& fields = model.embeddings().fields();
  for (embedding::EmbeddingTable<T>* table : model.tables()) {
    TableCollisions c;
    c.table = table->config().name;
    c.rows = table->rows();
    c.exact = exact;
    c.identity = table->config().identity;
    c.dynamic = table->dynamic();
    std::vector<uint64_t> keys;
    std::vector<bool> used(columns.size(), false);  // a column read by two fields counts once
    for (const auto& f : fields) {
      if (f.table != c.table) continue;
      const auto it = std::find(columns.begin(), columns.end(), f.column);
      if (it == columns.end()) continue;
      const auto i = static_cast<size_t>(it - columns.begin());
      if (used[i]) continue;
      used[i] = true;
      keys.insert(keys.end(), keys_of_column[i].begin(), keys_of_column[i].end());
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    c.keys = static_cast<int64_t>(keys.size());
    if (c.identity || c.dynamic) {
      c.rows_used = c.keys;  // distinct keys below rows (or in slots) have distinct rows
    } else {
      std::unordered_set<uint64_t> rows;
      rows.reserve(keys.size());
      for (uint64_t k : keys) rows.insert(table->row_of(k));
      c.rows_used = static_cast<int64_t>(rows.size());
    }
    out.push_back(c);
  }
  return out;
}

template std::vector<TableCollisions> count_collisions(models::EmbeddingModel<float>&,
                                                       const std::vector<std::string>&,
                                                       const std::vector<std::vector<uint64_t>>&,
                                                       bool);
template std::vector<TableCollisions> count_collisions(models::EmbeddingModel<double>&,
                                                       const std::vector<std::string>&,
                                                       const std::vector<std::vector<uint64_t>>&,
                                                       bool);

std::vector<std::vector<uint64_t>> keys_by_column(const data::Batch& sample) {
  std::vector<std::vector<uint64_t>> out;
  for (const auto& c : sample.sparse) out.push_back(c.keys);
  return out;
}

std::string describe_collisions(const std::vector<TableCollisions>& counts,
                                int64_t sample_records) {
  std::string out;
  for (const TableCollisions& c : counts) {
    if (!out.empty()) out += '\n';
    if (c.dynamic) {
      out += fmt::format("table '{}': {} distinct keys, capacity {} (dynamic: a slot per key, no "
                         "collisions)",
                         c.table, c.keys, c.rows);
      continue;
    }
    out += fmt::format("table '{}': {} distinct keys in {} rows", c.table, c.keys, c.rows);
    if (c.identity) {
      out += " (ids = identity: no collisions)";
      continue;
    }
    const double pct = c.keys > 0 ? 100.0 * static_cast<double>(c.colliding()) /
                                        static_cast<double>(c.keys)
                                  : 0.0;
    out += fmt::format(", {} share a row ({:.1f} %; {})", c.colliding(), pct,
                       c.exact ? "exact: every key of the data"
                               : fmt::format("among the keys of the first {} records: more "
                                             "keys collide more",
                                             sample_records));
  }
  return out;
}

}  // namespace lockstep::train

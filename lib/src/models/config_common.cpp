#include "models/config_common.h"

namespace lockstep::models {

namespace {
/// The string at table[key], which must be written and not be empty (`what` says what it
/// names, for the message).
std::string required_string(const io::TomlDoc& doc, const toml::table& table,
                            const std::string& prefix, std::string_view key,
                            std::string_view what) {
  const toml::node* node = table.get(key);
  if (!node) doc.fail(table, fmt::format("{}.{} is missing: give {}", prefix, key, what));
  std::string value = doc.get_string(table, prefix, key, "");
  if (value.empty()) doc.fail(*node, fmt::format("{}.{} is empty: give {}", prefix, key, what));
  return value;
}
}  // namespace

nn::ActivationConfig read_activation_config(const io::TomlDoc& doc, const toml::table& t,
                                            std::string_view prefix, nn::ActivationConfig a) {
  if (const toml::node* n = t.get("activation")) {
    const std::string name = doc.get_string(t, prefix, "activation", "");
    a.kind =
        doc.at(*n, [&] { return nn::parse_activation(name, fmt::format("{}.activation", prefix)); });
  }
  a.leaky_slope = static_cast<float>(doc.get_float(t, prefix, "leaky_slope", a.leaky_slope, 0, 1));
  a.prelu_init = static_cast<float>(doc.get_float(t, prefix, "prelu_init", a.prelu_init, -1, 1));
  a.dice_eps = static_cast<float>(doc.get_float(t, prefix, "dice_eps", a.dice_eps, 1e-12, 1));
  a.dice_momentum =
      static_cast<float>(doc.get_float(t, prefix, "dice_momentum", a.dice_momentum, 0, 1));
  return a;
}

nn::MlpConfig read_mlp_config(const io::TomlDoc& doc, const toml::table& t, std::string_view prefix,
                              nn::MlpConfig c, bool allow_empty) {
  doc.check_keys(t, prefix, {"widths", "activation", "activate_last", "leaky_slope", "prelu_init",
                             "dice_eps", "dice_momentum"});
  c.widths = doc.get_int_array(t, prefix, "widths", c.widths, 1, int64_t{1} << 20);
  if (c.widths.empty() && !allow_empty)
    doc.fail(*t.get("widths"), fmt::format("{}.widths is empty: give at least one layer width, "
                                           "e.g. [80, 1]",
                                           prefix));
  c.activate_last = doc.get_bool(t, prefix, "activate_last", c.activate_last);
  c.activation = read_activation_config(doc, t, prefix, c.activation);
  return c;
}

nn::OptimizerConfig read_optimizer_config(const io::TomlDoc& doc, const toml::table& t,
                                          std::string_view prefix, nn::OptimizerConfig c) {
  doc.check_keys(t, prefix,
                 {"kind", "lr", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay",
                  "initial_accumulator"});
  if (const toml::node* n = t.get("kind")) {
    const std::string name = doc.get_string(t, prefix, "kind", "");
    c.kind = doc.at(*n, [&] { return nn::parse_optimizer(name, fmt::format("{}.kind", prefix)); });
  }
  const auto f = [&](std::string_view key, float def, double lo, double hi) {
    return static_cast<float>(doc.get_float(t, prefix, key, def, lo, hi));
  };
  c.lr = f("lr", c.lr, 1e-12, 100);
  c.momentum = f("momentum", c.momentum, 0, 0.999999);
  c.nesterov = doc.get_bool(t, prefix, "nesterov", c.nesterov);
  c.beta1 = f("beta1", c.beta1, 0, 0.999999);
  c.beta2 = f("beta2", c.beta2, 0, 0.999999999);
  c.eps = f("eps", c.eps, 1e-30, 1);
  c.weight_decay = f("weight_decay", c.weight_decay, 0, 1);
  c.initial_accumulator = f("initial_accumulator", c.initial_accumulator, 0, 1e6);
  doc.located([&] { c.validate(prefix); });
  return c;
}

namespace {
embedding::AccessorConfig read_accessor(const io::TomlDoc& doc, const toml::table& a,
                                        const std::string& p, embedding::TableConfig& c) {
  doc.check_keys(a, p,
                 {"nonclk_coeff", "click_coeff", "embedx_threshold", "base_threshold",
                  "delta_threshold", "delta_keep_days", "show_click_decay_rate",
                  "delete_threshold", "delete_after_unseen_days", "lr_learning_rate",
                  "shrink_every_steps", "shrink_each_epoch"});
  embedding::AccessorConfig x = c.accessor;
  const auto f = [&](const char* key, float v) {
    return static_cast<float>(doc.get_float(a, p, key, v, 0, 1e9));
  };
  x.nonclk_coeff = f("nonclk_coeff", x.nonclk_coeff);
  x.click_coeff = f("click_coeff", x.click_coeff);
  x.embedx_threshold = f("embedx_threshold", x.embedx_threshold);
  x.base_threshold = f("base_threshold", x.base_threshold);
  x.delta_threshold = f("delta_threshold", x.delta_threshold);
  x.delete_threshold = f("delete_threshold", x.delete_threshold);
  x.show_click_decay_rate =
      static_cast<float>(doc.get_float(a, p, "show_click_decay_rate", x.show_click_decay_rate,
                                       1e-9, 1));
  x.lr_learning_rate =
      static_cast<float>(doc.get_float(a, p, "lr_learning_rate", x.lr_learning_rate, 1e-12, 100));
  x.delta_keep_days = doc.get_int(a, p, "delta_keep_days", x.delta_keep_days, 0, 100000);
  x.delete_after_unseen_days =
      doc.get_int(a, p, "delete_after_unseen_days", x.delete_after_unseen_days, 0, 100000);
  c.shrink_every_steps =
      doc.get_int(a, p, "shrink_every_steps", c.shrink_every_steps, 0, int64_t{1} << 40);
  c.shrink_each_epoch = doc.get_bool(a, p, "shrink_each_epoch", c.shrink_each_epoch);
  doc.at(a, [&] {
    x.validate(p);
    return 0;
  });
  return x;
}
}  // namespace

embedding::TableConfig read_table_params(const io::TomlDoc& doc, const toml::table& tt,
                                         const std::string& p, embedding::TableConfig c) {
  if (const toml::node* n = tt.get("kind")) {
    const std::string kind = doc.get_string(tt, p, "kind", "hashed");
    doc.at(*n, [&] {
      LOCKSTEP_CHECK(kind == "hashed" || kind == "dynamic",
                     "{}.kind = '{}' is not a table kind: use hashed (keys hashed into rows) or "
                     "dynamic (the feasign store: a slot per key, admission, decay, eviction)",
                     p, kind);
      return 0;
    });
    c.kind = kind == "dynamic" ? embedding::TableKind::Dynamic : embedding::TableKind::Hashed;
  }
  if (c.dynamic()) {
    // capacity: the most feasigns held; rows is accepted too (the rows the table holds), so
    // that --set model.tables_per_column.kind="dynamic" turns the built-in model's tables
    // dynamic; not both.
    const toml::node* rows = tt.get("rows");
    if (rows && tt.get("capacity"))
      doc.fail(*rows, fmt::format("{}.rows and {}.capacity are both given: a dynamic table's "
                                  "capacity is one of them (capacity: the most feasigns held; "
                                  "the built-in models give rows: there, --set {}.rows=N sets "
                                  "the capacity)",
                                  p, p, p));
    c.rows = doc.get_int(tt, p, rows ? "rows" : "capacity", c.rows, 1, int64_t{1} << 40);
    if (const toml::table* a = doc.get_table(tt, p, "accessor"))
      c.accessor = read_accessor(doc, *a, p + ".accessor", c);
  } else {
    for (const char* key : {"capacity", "accessor"})
      if (const toml::node* n = tt.get(key))
        doc.fail(*n, fmt::format("{}.{} is for dynamic tables: set {}.kind = \"dynamic\" or "
                                 "drop it",
                                 p, key, p));
    c.rows = doc.get_int(tt, p, "rows", c.rows, 1, int64_t{1} << 40);
  }
  c.dim = doc.get_int(tt, p, "dim", c.dim, 1, 4096);
  if (const toml::node* n = tt.get("pooling")) {
    const std::string name = doc.get_string(tt, p, "pooling", "");
    c.pooling = doc.at(*n, [&] { return embedding::parse_pooling(name, p + ".pooling"); });
  }
  c.init_scale = static_cast<float>(doc.get_float(tt, p, "init_scale", c.init_scale, 0, 10));
  if (const toml::node* n = tt.get("ids")) {
    const std::string ids = doc.get_string(tt, p, "ids", "hash");
    doc.at(*n, [&] {
      LOCKSTEP_CHECK(ids == "hash" || ids == "identity",
                     "{}.ids = '{}' is not a key mapping: use hash or identity", p, ids);
      return 0;
    });
    c.identity = ids == "identity";
  }
  return c;
}

std::vector<embedding::TableConfig> read_table_configs(const io::TomlDoc& doc, const toml::table& t,
                                                       std::string_view prefix) {
  std::vector<embedding::TableConfig> out;
  const auto tables = doc.get_table_array(t, prefix, "tables");
  for (size_t i = 0; i < tables.size(); ++i) {
    const toml::table& tt = *tables[i];
    const std::string p = fmt::format("{}.tables[{}]", prefix, i);
    doc.check_keys(tt, p,
                   {"name", "kind", "rows", "capacity", "dim", "pooling", "init_scale", "ids",
                    "accessor"});
    embedding::TableConfig c;
    c.name = required_string(doc, tt, p, "name", "the table a name that fields refer to");
    const bool dynamic = doc.get_string(tt, p, "kind", "hashed") == "dynamic";
    if (!tt.get("rows") && !(dynamic && tt.get("capacity")))
      doc.fail(tt, dynamic ? fmt::format("{}.capacity is missing: give the most feasigns the "
                                         "dynamic table holds, in [1, 2^40]",
                                         p)
                           : fmt::format("{}.rows is missing: give the number of hash buckets, "
                                         "in [1, 2^40]",
                                         p));
    c = read_table_params(doc, tt, p, c);
    out.push_back(c);
  }
  return out;
}

std::vector<embedding::FieldConfig> read_field_configs(const io::TomlDoc& doc, const toml::table& t,
                                                       std::string_view prefix) {
  std::vector<embedding::FieldConfig> out;
  const auto fields = doc.get_table_array(t, prefix, "fields");
  for (size_t i = 0; i < fields.size(); ++i) {
    const toml::table& ft = *fields[i];
    const std::string p = fmt::format("{}.fields[{}]", prefix, i);
    doc.check_keys(ft, p, {"column", "table", "max_len"});
    embedding::FieldConfig c;
    c.column = required_string(doc, ft, p, "column", "a sparse or sequence column of the data");
    c.table = required_string(doc, ft, p, "table", "one of the [[model.tables]] names");
    c.max_len = doc.get_int(ft, p, "max_len", 0, 0, 100000);
    out.push_back(c);
  }
  return out;
}

}  // namespace lockstep::models

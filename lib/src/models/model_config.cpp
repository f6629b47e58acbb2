// Loading model configurations from TOML (format: docs/configuration.md) and building models.
#include <algorithm>
#include <map>

#include "io/toml_util.h"
#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"
#include "models/config_common.h"

namespace lockstep::models {

namespace {
constexpr const char* kKinds = "embedding_mlp, din, bst, dual";

/// The data's sparse and sequence columns (Batch::sparse order) and its dense width.
struct DataColumns {
  std::vector<std::string> names;
  std::vector<int64_t> sequence_len;  // a sequence column's max_len; 0: a sparse column
  int64_t num_dense = 0;
};

DataColumns data_columns(const data::Schema& schema) {
  DataColumns d;
  for (int64_t c : schema.sparse_columns()) {
    const auto& col = schema.columns()[c];
    d.names.push_back(col.name);
    d.sequence_len.push_back(col.kind == data::ColumnKind::kSequence ? col.max_len : 0);
  }
  d.num_dense = schema.num_dense();
  return d;
}

/// The parts every model configuration shares: seed, [optimizer], [sparse_optimizer], and the
/// [model] table (checked for `kind` and the keys the caller allows).
struct Common {
  uint64_t seed = 1;
  std::string kind;
  const toml::table* model = nullptr;
  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
  /// The data the model is built for; nullptr when only the configuration is read (then the
  /// shorthand [model.tables_per_column] cannot be resolved).
  const DataColumns* data = nullptr;
};

Common read_common(const io::TomlDoc& doc) {
  const toml::table& root = doc.root();
  doc.check_keys(root, "", {"seed", "model", "optimizer", "sparse_optimizer", "train", "data"});
  Common c;
  c.seed = static_cast<uint64_t>(doc.get_int(root, "", "seed", 1, 0, INT64_MAX));
  c.model = doc.get_table(root, "", "model");
  if (!c.model)
    doc.fail(root,
             fmt::format("the [model] table is missing: add one with kind = one of {}", kKinds));
  c.kind = doc.get_string(*c.model, "model", "kind", "embedding_mlp");
  if (c.kind != "embedding_mlp" && c.kind != "din" && c.kind != "bst" && c.kind != "dual")
    doc.fail(*c.model->get("kind"),
             fmt::format("model.kind = '{}' is not a model: use one of {}", c.kind, kKinds));
  if (const toml::table* opt = doc.get_table(root, "", "optimizer"))
    c.dense_optimizer = read_optimizer_config(doc, *opt, "optimizer", c.dense_optimizer);
  if (const toml::table* opt = doc.get_table(root, "", "sparse_optimizer"))
    c.sparse_optimizer = read_optimizer_config(doc, *opt, "sparse_optimizer", c.sparse_optimizer);
  return c;
}

/// Fails at model.kind (or at [model] when the file does not set it) unless the kind is `kind`;
/// `why` ends the message.
void expect_kind(const io::TomlDoc& doc, const Common& common, const std::string& kind,
                 const std::string& why) {
  if (common.kind == kind) return;
  if (const toml::node* n = common.model->get("kind"))
    doc.fail(*n, fmt::format("model.kind = '{}': {}", common.kind, why));
  doc.fail(*common.model, fmt::format("model.kind is not set (so the model is {}): {}; add kind = "
                                      "\"{}\" to [model]",
                                      common.kind, why, kind));
}
void expect_kind(const io::TomlDoc& doc, const Common& common, const std::string& kind) {
  expect_kind(doc, common, kind, fmt::format("expected {} here", kind));
}

/// c after c.validate(): its errors name the file and the line of their key.
template <class Config>
Config validated(const io::TomlDoc& doc, Config c) {
  doc.located([&] { c.validate(); });
  return c;
}

EmbeddingMlpConfig read_embedding_mlp(const io::TomlDoc& doc, const Common& common);

/// The array of strings at t[key] (def when absent); `what` says what its elements are, for the
/// messages ("field names (columns)").
std::vector<std::string> read_names(const io::TomlDoc& doc, const toml::table& t,
                                    std::string_view prefix, std::string_view key,
                                    std::vector<std::string> def,
                                    std::string_view what = "field names (columns)") {
  const toml::node* node = t.get(key);
  if (!node) return def;
  const toml::array* arr = node->as_array();
  if (!arr) doc.fail(*node, fmt::format("{}.{} must be an array of {}", prefix, key, what));
  std::vector<std::string> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    if (!el.is_string())
      doc.fail(el,
               fmt::format("{}.{}[{}] must be a string: the array holds {}", prefix, key, i, what));
    out.push_back(*el.value<std::string>());
  }
  return out;
}

/// The shorthand [model.tables_per_column] (+ [model.columns.<name>]) resolved against the data
/// (docs/configuration.md, "One table per column"): the tables, the columns in data order, and
/// the history columns a target attention can use.
struct Shorthand {
  const toml::table* node = nullptr;  // [model.tables_per_column]; nullptr: not used
  struct Column {
    std::string name, table;
    int64_t max_len = 0;  // > 0: a sequence column read as a sequence where the model attends
  };
  std::vector<embedding::TableConfig> tables;
  std::vector<Column> columns;
  /// History columns (a sequence column reading the table of a sparse column, its target) and
  /// their targets, in data order: the default DIN keys and query, BST sequence and target.
  std::vector<std::string> keys, query;

  bool used() const { return node != nullptr; }
  bool has_history() const { return !keys.empty(); }
  /// The fields: every column pooled, except that with `attend` the history columns are
  /// sequence fields instead (din, bst) or, with `attend` and `pooled_history`, also (dual: the
  /// sequence fields after the pooled ones). The targets are made consecutive (moved to the
  /// place of the first), as the attention needs.
  std::vector<embedding::FieldConfig> fields(bool attend, bool pooled_history) const {
    std::vector<embedding::FieldConfig> out;
    const auto is = [](const std::vector<std::string>& v, const std::string& n) {
      return std::find(v.begin(), v.end(), n) != v.end();
    };
    bool targets_done = false;
    for (const auto& c : columns) {
      if (is(query, c.name)) {
        if (targets_done) continue;
        targets_done = true;
        for (const auto& q : query)
          if (std::none_of(out.begin(), out.end(), [&](const auto& f) { return f.column == q; }))
            out.push_back({q, table_of(q), 0});
        continue;
      }
      if (attend && !pooled_history && is(keys, c.name))
        out.push_back({c.name, c.table, c.max_len});
      else
        out.push_back({c.name, c.table, 0});
    }
    if (attend && pooled_history)
      for (const auto& k : keys) {
        const auto& c = column(k);
        out.push_back({c.name, c.table, c.max_len});
      }
    return out;
  }
  const Column& column(const std::string& name) const {
    for (const auto& c : columns)
      if (c.name == name) return c;
    throw Error("internal: no shorthand column " + name);
  }
  std::string table_of(const std::string& name) const { return column(name).table; }
};

Shorthand read_shorthand(const io::TomlDoc& doc, const Common& common) {
  const toml::table& m = *common.model;
  Shorthand sh;
  const toml::table* tpc = doc.get_table(m, "model", "tables_per_column");
  const toml::table* overrides = doc.get_table(m, "model", "columns");
  if (!tpc) {
    if (overrides)
      doc.fail(*overrides, "[model.columns] adjusts the shorthand [model.tables_per_column], which "
                           "is missing: add it (or list [[model.tables]] and [[model.fields]])");
    return sh;
  }
  for (const char* key : {"tables", "fields"})
    if (const toml::node* n = m.get(key))
      doc.fail(*n, fmt::format("model.{} and [model.tables_per_column] both describe the tables: "
                               "keep one (the shorthand makes one table per column)",
                               key));
  if (!common.data)
    doc.fail(*tpc, "[model.tables_per_column] makes one table per column of the data, and no data "
                   "is given here: build the model with models::load_model(path, schema, ...) or "
                   "models::build_model");
  const DataColumns& data = *common.data;
  sh.node = tpc;
  const std::string p = "model.tables_per_column";
  doc.check_keys(*tpc, p,
                 {"kind", "rows", "capacity", "dim", "pooling", "init_scale", "ids", "accessor",
                  "share"});
  embedding::TableConfig base;
  base.rows = 131072;
  base = read_table_params(doc, *tpc, p, base);
  const auto has_column = [&](const std::string& n) {
    return std::find(data.names.begin(), data.names.end(), n) != data.names.end();
  };
  const std::string column_list = fmt::format("{}", fmt::join(data.names, ", "));

  // share = { hist_items = "item" }: applied where the data has both columns.
  std::map<std::string, std::pair<std::string, const toml::node*>> share;
  if (const toml::table* t = doc.get_table(*tpc, p, "share"))
    for (const auto& [k, v] : *t) {
      const std::string key = fmt::format("{}.share.{}", p, k.str());
      if (!v.is_string())
        doc.fail(v, fmt::format("{} must be a string: the column whose table '{}' reads", key,
                                k.str()));
      const std::string target = *v.value<std::string>();
      if (has_column(std::string(k.str())) && has_column(target))
        share[std::string(k.str())] = {target, &v};
    }
  // [model.columns.<name>]
  std::map<std::string, const toml::table*> over;
  if (overrides)
    for (const auto& [k, v] : *overrides) {
      const std::string name(k.str());
      const std::string key = "model.columns." + name;
      if (!v.is_table())
        doc.fail(v, fmt::format("{} must be a table ([{}]) of the column's settings", key, key));
      if (!has_column(name))
        doc.fail(v, fmt::format("{}: '{}' is not a sparse or sequence column of the data (its "
                                "columns: {})",
                                key, name, column_list));
      over[name] = v.as_table();
      doc.check_keys(*v.as_table(), key,
                     {"table", "kind", "rows", "capacity", "dim", "pooling", "init_scale", "ids",
                      "accessor", "max_len", "skip"});
    }
  std::map<std::string, const toml::node*> table_node;  // where a column's table was chosen
  for (size_t j = 0; j < data.names.size(); ++j) {
    const std::string& name = data.names[j];
    const auto o = over.find(name);
    const toml::table* ot = o == over.end() ? nullptr : o->second;
    const std::string q = "model.columns." + name;
    if (ot && doc.get_bool(*ot, q, "skip", false)) continue;
    Shorthand::Column c{name, name, data.sequence_len[j]};
    if (const auto s = share.find(name); s != share.end()) {
      c.table = s->second.first;
      table_node[name] = s->second.second;
    }
    if (ot && ot->get("table")) {
      c.table = doc.get_string(*ot, q, "table", name);
      table_node[name] = ot->get("table");
    }
    if (ot && ot->get("max_len")) {
      c.max_len = doc.get_int(*ot, q, "max_len", 0, 0, 100000);
      if (c.max_len > 0 && data.sequence_len[j] == 0)
        doc.fail(*ot->get("max_len"),
                 fmt::format("{}.max_len = {}: '{}' is a sparse column, not a sequence column: "
                             "only sequence columns are read as sequences",
                             q, c.max_len, name));
    }
    sh.columns.push_back(c);
  }
  // A column that reads another's table: that column must have a table of its own, and the
  // table's settings are that column's.
  const auto owner = [&](const std::string& table) -> const Shorthand::Column* {
    for (const auto& c : sh.columns)
      if (c.name == table && c.table == c.name) return &c;
    return nullptr;
  };
  for (const auto& c : sh.columns) {
    if (c.table == c.name) continue;
    const toml::node& at = *table_node.at(c.name);
    if (!owner(c.table))
      doc.fail(at, fmt::format("column '{}' reads the table of '{}', which is not a column of the "
                               "data with a table of its own (skipped, or reading another's): "
                               "name one of {}",
                               c.name, c.table, column_list));
    if (const auto o = over.find(c.name); o != over.end())
      for (const char* key :
           {"kind", "rows", "capacity", "dim", "pooling", "init_scale", "ids", "accessor"})
        if (const toml::node* n = o->second->get(key))
          doc.fail(*n, fmt::format("model.columns.{}.{}: column '{}' reads the table of '{}': set "
                                   "{} in [model.columns.{}]",
                                   c.name, key, c.name, c.table, key, c.table));
  }
  for (const auto& c : sh.columns) {
    if (c.table != c.name) continue;
    embedding::TableConfig t = base;
    t.name = c.name;
    if (const auto o = over.find(c.name); o != over.end())
      t = read_table_params(doc, *o->second, "model.columns." + c.name, t);
    sh.tables.push_back(t);
  }
  for (const auto& c : sh.columns) {
    const Shorthand::Column* target = c.table != c.name ? owner(c.table) : nullptr;
    if (c.max_len > 0 && target && target->max_len == 0) {
      sh.keys.push_back(c.name);
      sh.query.push_back(target->name);
    }
  }
  if (sh.columns.empty())
    doc.fail(*tpc, fmt::format("[model.tables_per_column]: no column is left (the data's: {}), so "
                               "the model has no input",
                               column_list.empty() ? "none" : column_list));
  return sh;
}

/// Fails at model.kind (or [model]) when a model that attends over a history meets data without
/// one.
void expect_history(const io::TomlDoc& doc, const Common& common, const Shorthand& sh) {
  if (sh.has_history()) return;
  const toml::node& at = common.model->get("kind") ? *common.model->get("kind") : *common.model;
  doc.fail(at, fmt::format(
                   "model.kind = '{}' attends over a history, and the data has no sequence column "
                   "that reads the table of a sparse column (its columns: {}): use kind = "
                   "\"embedding_mlp\" or \"dual\" (whose teacher then uses fm and cross), or make "
                   "a sequence column the history of a target column with [model.columns.<history>] "
                   "table = \"<target>\"",
                   common.kind, fmt::join(common.data->names, ", ")));
}

/// [<prefix>] of a DIN: query, keys, [<prefix>.attention].
void read_din_section(const io::TomlDoc& doc, const toml::table& din, const std::string& p,
                      std::vector<std::string>& query, std::vector<std::string>& keys,
                      nn::DinAttentionConfig& attention) {
  doc.check_keys(din, p, {"query", "keys", "attention"});
  query = read_names(doc, din, p, "query", query);
  keys = read_names(doc, din, p, "keys", keys);
  if (const toml::table* att = doc.get_table(din, p, "attention")) {
    const std::string q = p + ".attention";
    doc.check_keys(*att, q, {"hidden", "activation", "softmax", "leaky_slope", "prelu_init",
                             "dice_eps", "dice_momentum"});
    attention.activation = read_activation_config(doc, *att, q, attention.activation);
    attention.hidden = doc.get_int_array(*att, q, "hidden", attention.hidden, 1, 1 << 16);
    attention.softmax = doc.get_bool(*att, q, "softmax", attention.softmax);
  }
}

/// [<prefix>] of a BST: target, sequence, blocks, output, [<prefix>.transformer] (and time_gap
/// when `time_gap` is given).
void read_bst_section(const io::TomlDoc& doc, const toml::table& bst, const std::string& p,
                      std::vector<std::string>& target, std::vector<std::string>& sequence,
                      std::string* time_gap, nn::BstEncoderConfig& enc) {
  if (time_gap)
    doc.check_keys(bst, p, {"target", "sequence", "time_gap", "blocks", "output", "transformer"});
  else
    doc.check_keys(bst, p, {"target", "sequence", "blocks", "output", "transformer"});
  target = read_names(doc, bst, p, "target", target);
  sequence = read_names(doc, bst, p, "sequence", sequence);
  if (time_gap) *time_gap = doc.get_string(bst, p, "time_gap", *time_gap);
  enc.blocks = doc.get_int(bst, p, "blocks", enc.blocks, 1, 64);
  if (const toml::node* n = bst.get("output")) {
    const std::string name = doc.get_string(bst, p, "output", "");
    enc.readout = doc.at(*n, [&] { return nn::parse_bst_readout(name, p + ".output"); });
  }
  if (const toml::table* tr = doc.get_table(bst, p, "transformer")) {
    const std::string q = p + ".transformer";
    doc.check_keys(*tr, q, {"heads", "ffn_width", "leaky_slope", "dropout", "layer_norm_eps"});
    auto& t = enc.transformer;
    t.heads = doc.get_int(*tr, q, "heads", t.heads, 1, 1024);
    t.ffn_width = doc.get_int(*tr, q, "ffn_width", t.ffn_width, 1, int64_t{1} << 20);
    t.leaky_slope = static_cast<float>(doc.get_float(*tr, q, "leaky_slope", t.leaky_slope, 0, 1));
    t.dropout = static_cast<float>(doc.get_float(*tr, q, "dropout", t.dropout, 0, 0.95));
    t.layer_norm_eps =
        static_cast<float>(doc.get_float(*tr, q, "layer_norm_eps", t.layer_norm_eps, 1e-12, 1));
  }
}

/// The keys every model shares: seed and optimizers (from `common`), use_dense, tables, fields;
/// plus [model.mlp] when `mlp` is given. `extra` are the kind's own keys of [model].
template <class Config>
void read_base(const io::TomlDoc& doc, const Common& common, Config& c, nn::MlpConfig* mlp,
               std::initializer_list<std::string_view> allowed) {
  const toml::table& m = *common.model;
  doc.check_keys(m, "model", allowed);
  c.seed = common.seed;
  c.dense_optimizer = common.dense_optimizer;
  c.sparse_optimizer = common.sparse_optimizer;
  c.use_dense = doc.get_bool(m, "model", "use_dense", c.use_dense);
  if (mlp)
    if (const toml::table* t = doc.get_table(m, "model", "mlp"))
      *mlp = read_mlp_config(doc, *t, "model.mlp", *mlp);
  c.tables = read_table_configs(doc, m, "model");
  c.fields = read_field_configs(doc, m, "model");
}

/// The allowed keys of [model] for a kind: its own, those every model shares, and the shorthand.
#define LOCKSTEP_MODEL_KEYS(...) \
  { "kind", "use_dense", "tables", "fields", "tables_per_column", "columns", __VA_ARGS__ }

DinConfig read_din(const io::TomlDoc& doc, const Common& common) {
  DinConfig c;
  read_base(doc, common, c, &c.mlp, LOCKSTEP_MODEL_KEYS("mlp", "din"));
  if (const Shorthand sh = read_shorthand(doc, common); sh.used()) {
    expect_history(doc, common, sh);
    c.tables = sh.tables;
    c.fields = sh.fields(true, false);
    c.query = sh.query;
    c.keys = sh.keys;
  }
  if (const toml::table* din = doc.get_table(*common.model, "model", "din"))
    read_din_section(doc, *din, "model.din", c.query, c.keys, c.attention);
  return validated(doc, c);
}

BstConfig read_bst(const io::TomlDoc& doc, const Common& common) {
  BstConfig c;
  read_base(doc, common, c, &c.mlp, LOCKSTEP_MODEL_KEYS("mlp", "bst"));
  if (const Shorthand sh = read_shorthand(doc, common); sh.used()) {
    expect_history(doc, common, sh);
    c.tables = sh.tables;
    c.fields = sh.fields(true, false);
    c.target = sh.query;
    c.sequence = sh.keys;
  }
  if (const toml::table* bst = doc.get_table(*common.model, "model", "bst")) {
    nn::BstEncoderConfig enc{c.blocks, c.transformer, c.output};
    read_bst_section(doc, *bst, "model.bst", c.target, c.sequence, &c.time_gap, enc);
    c.blocks = enc.blocks;
    c.transformer = enc.transformer;
    c.output = enc.readout;
  }
  return validated(doc, c);
}

DualConfig read_dual(const io::TomlDoc& doc, const Common& common) {
  DualConfig c;
  read_base(doc, common, c, nullptr, LOCKSTEP_MODEL_KEYS("teacher", "student", "distillation"));
  const toml::table& m = *common.model;
  const Shorthand sh = read_shorthand(doc, common);
  // Without history the default teacher is fm + cross (docs/dual_dnn.md).
  const bool history = sh.used() ? sh.has_history()
                                 : std::any_of(c.fields.begin(), c.fields.end(),
                                               [](const auto& f) { return f.max_len > 0; });
  if (!history) c.components = {"fm", "cross"};
  if (sh.used()) {
    c.din_query = c.bst_target = sh.query;
    c.din_keys = c.bst_sequence = sh.keys;
  }
  if (const toml::table* t = doc.get_table(m, "model", "teacher")) {
    const std::string p = "model.teacher";
    doc.check_keys(*t, p, {"components", "mlp", "fm", "cross", "din", "bst"});
    c.components =
        read_names(doc, *t, p, "components", c.components, "component names (fm, cross, din, bst)");
    if (sh.used() && !sh.has_history())
      for (size_t i = 0; i < c.components.size(); ++i)
        if (c.components[i] == "din" || c.components[i] == "bst")
          doc.fail(*t->get("components")->as_array()->get(i),
                   fmt::format("model.teacher.components[{}] = '{}' attends over a history, and "
                               "the data has no sequence column that reads the table of a sparse "
                               "column (its columns: {}): use fm and cross (the default without "
                               "history), or make a sequence column the history of a target "
                               "column with [model.columns.<history>] table = \"<target>\"",
                               i, c.components[i], fmt::join(common.data->names, ", ")));
    if (const toml::table* mlp = doc.get_table(*t, p, "mlp"))
      c.teacher_mlp = read_mlp_config(doc, *mlp, p + ".mlp", c.teacher_mlp);
    if (const toml::table* fm = doc.get_table(*t, p, "fm")) {
      doc.check_keys(*fm, p + ".fm", {"fields"});
      c.fm_fields = read_names(doc, *fm, p + ".fm", "fields", c.fm_fields);
    }
    if (const toml::table* cross = doc.get_table(*t, p, "cross")) {
      doc.check_keys(*cross, p + ".cross", {"layers"});
      c.cross_layers = doc.get_int(*cross, p + ".cross", "layers", c.cross_layers, 1, 64);
    }
    if (const toml::table* din = doc.get_table(*t, p, "din"))
      read_din_section(doc, *din, p + ".din", c.din_query, c.din_keys, c.din_attention);
    if (const toml::table* bst = doc.get_table(*t, p, "bst"))
      read_bst_section(doc, *bst, p + ".bst", c.bst_target, c.bst_sequence, nullptr, c.bst);
  }
  if (sh.used()) {
    c.tables = sh.tables;
    const bool attend =
        std::any_of(c.components.begin(), c.components.end(),
                    [](const std::string& k) { return k == "din" || k == "bst"; });
    c.fields = sh.fields(attend, true);
  }
  if (const toml::table* s = doc.get_table(m, "model", "student")) {
    doc.check_keys(*s, "model.student", {"mlp"});
    if (const toml::table* mlp = doc.get_table(*s, "model.student", "mlp"))
      c.student_mlp = read_mlp_config(doc, *mlp, "model.student.mlp", c.student_mlp);
  }
  // Student residual tables are built for hashed tables only: with a dynamic table the default
  // is off (an explicit true is refused by DualConfig::validate).
  if (std::any_of(c.tables.begin(), c.tables.end(), [](const auto& t) { return t.dynamic(); }))
    c.student_residual = false;
  if (const toml::table* d = doc.get_table(m, "model", "distillation")) {
    const std::string p = "model.distillation";
    doc.check_keys(*d, p, {"teacher_weight", "student_weight", "kd_weight", "kd", "temperature",
                           "hint_weight", "kd_warmup_steps", "student_embedding_scale",
                           "student_embedding_losses", "student_residual_embeddings",
                           "student_updates_embeddings", "mode"});
    const auto f = [&](std::string_view key, float def, double lo, double hi) {
      return static_cast<float>(doc.get_float(*d, p, key, def, lo, hi));
    };
    c.teacher_weight = f("teacher_weight", c.teacher_weight, 0, 1e3);
    c.student_weight = f("student_weight", c.student_weight, 0, 1e3);
    c.kd_weight = f("kd_weight", c.kd_weight, 0, 1e3);
    c.temperature = f("temperature", c.temperature, 1e-3, 1e3);
    c.hint_weight = f("hint_weight", c.hint_weight, 0, 1e3);
    c.kd_warmup_steps = doc.get_int(*d, p, "kd_warmup_steps", c.kd_warmup_steps, 0, int64_t{1} << 40);
    c.student_embedding_scale =
        f("student_embedding_scale", c.student_embedding_scale, 0, 1);
    if (const toml::node* n = d->get("student_embedding_losses")) {
      const std::string name = doc.get_string(*d, p, "student_embedding_losses", "");
      c.student_embedding_losses = doc.at(
          *n, [&] { return parse_student_embedding_losses(name, p + ".student_embedding_losses"); });
    }
    c.student_residual =
        doc.get_bool(*d, p, "student_residual_embeddings", c.student_residual);
    // The older switch: true = Rocket Launching (every student term, scale 1), false = 0.
    if (const toml::node* n = d->get("student_updates_embeddings")) {
      for (const char* newer : {"student_embedding_scale", "student_embedding_losses"})
        if (d->get(newer))
          doc.fail(*n, fmt::format("{}.student_updates_embeddings and {}.{} are both set: "
                                   "student_updates_embeddings = true is student_embedding_scale "
                                   "= 1 with student_embedding_losses = \"all\"; keep one",
                                   p, p, newer));
      const bool rocket = doc.get_bool(*d, p, "student_updates_embeddings", false);
      c.student_embedding_scale = rocket ? 1.0f : 0.0f;
      if (rocket) c.student_embedding_losses = StudentEmbeddingLosses::All;
    }
    if (const toml::node* n = d->get("kd")) {
      const std::string name = doc.get_string(*d, p, "kd", "");
      c.kd = doc.at(*n, [&] { return parse_kd_loss(name, p + ".kd"); });
    }
    if (const toml::node* n = d->get("mode")) {
      const std::string name = doc.get_string(*d, p, "mode", "");
      c.mode = doc.at(*n, [&] { return parse_dual_mode(name, p + ".mode"); });
    }
  }
  return validated(doc, c);
}
EmbeddingMlpConfig read_embedding_mlp(const io::TomlDoc& doc, const Common& common) {
  EmbeddingMlpConfig c;
  read_base(doc, common, c, nullptr, LOCKSTEP_MODEL_KEYS("mlp", "fm"));
  const toml::table& m = *common.model;
  // widths = []: no deep part (LR, FM); validate() asks for an FM term then.
  if (const toml::table* t = doc.get_table(m, "model", "mlp"))
    c.mlp = read_mlp_config(doc, *t, "model.mlp", c.mlp, /*allow_empty=*/true);
  const toml::table* fm = doc.get_table(m, "model", "fm");
  if (fm) {
    const std::string p = "model.fm";
    doc.check_keys(*fm, p, {"first_order", "second_order", "linear_tables", "fields"});
    c.fm.first_order = doc.get_bool(*fm, p, "first_order", false);
    c.fm.second_order = doc.get_bool(*fm, p, "second_order", false);
    c.fm.linear_tables =
        read_names(doc, *fm, p, "linear_tables", {}, "table names (dim 1, sum pooling)");
    c.fm.fields = read_names(doc, *fm, p, "fields", {});
  }
  if (const Shorthand sh = read_shorthand(doc, common); sh.used()) {
    c.tables = sh.tables;
    c.fields = sh.fields(false, false);
    if (c.fm.first_order) {
      // One first-order table "<table>.linear" per table (dim 1, sum pooling, zeros, the rows and
      // ids of its table), read by the same columns, and those fields first.
      if (const toml::node* n = fm->get("linear_tables"))
        doc.fail(*n, "model.fm.linear_tables: [model.tables_per_column] makes the first-order "
                     "tables (\"<table>.linear\" per table): drop linear_tables, or list "
                     "[[model.tables]] and [[model.fields]] instead of the shorthand");
      std::vector<embedding::FieldConfig> linear;
      for (const auto& f : c.fields) linear.push_back({f.column, f.table + ".linear", 0});
      for (const auto& t : sh.tables) {
        embedding::TableConfig lt = t;
        lt.name = t.name + ".linear";
        lt.dim = 1;
        lt.pooling = embedding::Pooling::Sum;
        lt.init_scale = 0;
        c.tables.push_back(lt);
        c.fm.linear_tables.push_back(lt.name);
      }
      if (c.mlp.widths.empty() && !c.fm.second_order) {
        // LR: nothing reads the embeddings, so the first-order tables are all there is.
        c.tables.erase(c.tables.begin(), c.tables.begin() + static_cast<long>(sh.tables.size()));
        c.fields = linear;
      } else {
        c.fields.insert(c.fields.begin(), linear.begin(), linear.end());
      }
    }
  }
  return validated(doc, c);
}

/// The configuration of `kind` in `doc`; Error when [model] kind names another model.
template <class Config>
Config read_config(const io::TomlDoc& doc, const std::string& kind,
                   Config (*read)(const io::TomlDoc&, const Common&)) {
  const Common common = read_common(doc);
  expect_kind(doc, common, kind);
  return read(doc, common);
}
}  // namespace

DualConfig load_dual_config(const std::string& path) {
  return read_config(io::TomlDoc(path), "dual", read_dual);
}
DualConfig parse_dual_config(std::string_view toml_text, const std::string& source) {
  return read_config(io::TomlDoc::from_text(toml_text, source), "dual", read_dual);
}

BstConfig load_bst_config(const std::string& path) {
  return read_config(io::TomlDoc(path), "bst", read_bst);
}
BstConfig parse_bst_config(std::string_view toml_text, const std::string& source) {
  return read_config(io::TomlDoc::from_text(toml_text, source), "bst", read_bst);
}

EmbeddingMlpConfig load_embedding_mlp_config(const std::string& path) {
  return read_config(io::TomlDoc(path), "embedding_mlp", read_embedding_mlp);
}
EmbeddingMlpConfig parse_embedding_mlp_config(std::string_view toml_text,
                                              const std::string& source) {
  return read_config(io::TomlDoc::from_text(toml_text, source), "embedding_mlp",
                     read_embedding_mlp);
}

DinConfig load_din_config(const std::string& path) {
  return read_config(io::TomlDoc(path), "din", read_din);
}
DinConfig parse_din_config(std::string_view toml_text, const std::string& source) {
  return read_config(io::TomlDoc::from_text(toml_text, source), "din", read_din);
}

std::string model_kind(const std::string& path) { return read_common(io::TomlDoc(path)).kind; }
std::string parse_model_kind(std::string_view toml_text, const std::string& source) {
  return read_common(io::TomlDoc::from_text(toml_text, source)).kind;
}

namespace {
/// The model `doc` describes, for `data`.
template <class T>
std::unique_ptr<Model<T>> build_from(const io::TomlDoc& doc, const DataColumns& data,
                                     const Context& ctx, bool student_only) {
  Common common = read_common(doc);
  common.data = &data;
  if (student_only)
    expect_kind(doc, common, "dual",
                "student-only training needs the dual model (kind = \"dual\")");
  const auto& columns = data.names;
  const int64_t num_dense = data.num_dense;
  // The constructors check the configuration against the data and the embedding layout; their
  // errors name the key, located here in the file. Fields and tables the shorthand made are
  // not written in the file: their errors are located at [model.tables_per_column].
  const toml::table* shorthand = common.model->get_as<toml::table>("tables_per_column");
  const auto build = [&](auto&& make) {
    return doc.located([&] {
      try {
        return make();
      } catch (const ConfigError& e) {
        const std::string& key = e.key();
        if (shorthand && (key.rfind("model.fields", 0) == 0 || key.rfind("model.tables", 0) == 0))
          doc.fail(*shorthand, fmt::format("{} (a field or table that [model.tables_per_column] "
                                           "made for the data)",
                                           e.what()));
        throw;
      }
    });
  };
  if (common.kind == "din") {
    const DinConfig c = read_din(doc, common);
    return build([&]() -> std::unique_ptr<Model<T>> {
      return std::make_unique<Din<T>>(c, columns, num_dense, ctx);
    });
  }
  if (common.kind == "bst") {
    const BstConfig c = read_bst(doc, common);
    return build([&]() -> std::unique_ptr<Model<T>> {
      return std::make_unique<Bst<T>>(c, columns, num_dense, ctx);
    });
  }
  if (common.kind == "dual") {
    DualConfig c = read_dual(doc, common);
    if (student_only) c.mode = DualMode::StudentOnly;
    return build([&]() -> std::unique_ptr<Model<T>> {
      return std::make_unique<DualDnn<T>>(c, columns, num_dense, ctx);
    });
  }
  const EmbeddingMlpConfig c = read_embedding_mlp(doc, common);
  return build([&]() -> std::unique_ptr<Model<T>> {
    return std::make_unique<EmbeddingMlp<T>>(c, columns, num_dense, ctx);
  });
}
}  // namespace

template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path,
                                     const std::vector<std::string>& sparse_columns,
                                     int64_t num_dense, const Context& ctx, bool student_only) {
  DataColumns data;
  data.names = sparse_columns;
  data.sequence_len.assign(sparse_columns.size(), 0);
  data.num_dense = num_dense;
  return build_from<T>(io::TomlDoc(path), data, ctx, student_only);
}

template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path, const data::Schema& schema,
                                     const Context& ctx, bool student_only) {
  return build_from<T>(io::TomlDoc(path), data_columns(schema), ctx, student_only);
}

template <class T>
std::unique_ptr<Model<T>> build_model(std::string_view toml_text, const std::string& source,
                                      const data::Schema& schema, const Context& ctx,
                                      bool student_only) {
  return build_from<T>(io::TomlDoc::from_text(toml_text, source), data_columns(schema), ctx,
                       student_only);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                  \
  template std::unique_ptr<Model<T>> load_model<T>(const std::string&,                          \
                                                   const std::vector<std::string>&, int64_t,    \
                                                   const Context&, bool);                       \
  template std::unique_ptr<Model<T>> load_model<T>(const std::string&, const data::Schema&,     \
                                                   const Context&, bool);                       \
  template std::unique_ptr<Model<T>> build_model<T>(std::string_view, const std::string&,       \
                                                    const data::Schema&, const Context&, bool);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::models

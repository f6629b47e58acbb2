// Loading model configurations from TOML (format: docs/configuration.md) and building models.
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

/// The parts every model configuration shares: seed, [optimizer], [sparse_optimizer], and the
/// [model] table (checked for `kind` and the keys the caller allows).
struct Common {
  uint64_t seed = 1;
  std::string kind;
  const toml::table* model = nullptr;
  nn::OptimizerConfig dense_optimizer{nn::OptimizerKind::Adam, 1e-3f};
  nn::OptimizerConfig sparse_optimizer{nn::OptimizerKind::Adagrad, 0.5f};
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

DinConfig read_din(const io::TomlDoc& doc, const Common& common) {
  DinConfig c;
  read_base(doc, common, c, &c.mlp, {"kind", "use_dense", "mlp", "tables", "fields", "din"});
  if (const toml::table* din = doc.get_table(*common.model, "model", "din"))
    read_din_section(doc, *din, "model.din", c.query, c.keys, c.attention);
  return validated(doc, c);
}

BstConfig read_bst(const io::TomlDoc& doc, const Common& common) {
  BstConfig c;
  read_base(doc, common, c, &c.mlp, {"kind", "use_dense", "mlp", "tables", "fields", "bst"});
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
  read_base(doc, common, c, nullptr,
            {"kind", "use_dense", "tables", "fields", "teacher", "student", "distillation"});
  const toml::table& m = *common.model;
  if (const toml::table* t = doc.get_table(m, "model", "teacher")) {
    const std::string p = "model.teacher";
    doc.check_keys(*t, p, {"components", "mlp", "fm", "cross", "din", "bst"});
    c.components =
        read_names(doc, *t, p, "components", c.components, "component names (fm, cross, din, bst)");
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
  if (const toml::table* s = doc.get_table(m, "model", "student")) {
    doc.check_keys(*s, "model.student", {"mlp"});
    if (const toml::table* mlp = doc.get_table(*s, "model.student", "mlp"))
      c.student_mlp = read_mlp_config(doc, *mlp, "model.student.mlp", c.student_mlp);
  }
  if (const toml::table* d = doc.get_table(m, "model", "distillation")) {
    const std::string p = "model.distillation";
    doc.check_keys(*d, p, {"teacher_weight", "student_weight", "kd_weight", "kd", "temperature",
                           "hint_weight", "student_updates_embeddings", "mode"});
    const auto f = [&](std::string_view key, float def, double lo, double hi) {
      return static_cast<float>(doc.get_float(*d, p, key, def, lo, hi));
    };
    c.teacher_weight = f("teacher_weight", c.teacher_weight, 0, 1e3);
    c.student_weight = f("student_weight", c.student_weight, 0, 1e3);
    c.kd_weight = f("kd_weight", c.kd_weight, 0, 1e3);
    c.temperature = f("temperature", c.temperature, 1e-3, 1e3);
    c.hint_weight = f("hint_weight", c.hint_weight, 0, 1e3);
    c.student_updates_embeddings =
        doc.get_bool(*d, p, "student_updates_embeddings", c.student_updates_embeddings);
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
  read_base(doc, common, c, &c.mlp, {"kind", "use_dense", "mlp", "tables", "fields"});
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

template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path,
                                     const std::vector<std::string>& sparse_columns,
                                     int64_t num_dense, const Context& ctx, bool student_only) {
  const io::TomlDoc doc(path);
  const Common common = read_common(doc);
  if (student_only)
    expect_kind(doc, common, "dual",
                "student-only training needs the dual model (kind = \"dual\")");
  // The constructors check the configuration against the data and the embedding layout; their
  // errors name the key, located here in the file.
  if (common.kind == "din") {
    const DinConfig c = read_din(doc, common);
    return doc.located([&] { return std::make_unique<Din<T>>(c, sparse_columns, num_dense, ctx); });
  }
  if (common.kind == "bst") {
    const BstConfig c = read_bst(doc, common);
    return doc.located([&] { return std::make_unique<Bst<T>>(c, sparse_columns, num_dense, ctx); });
  }
  if (common.kind == "dual") {
    DualConfig c = read_dual(doc, common);
    if (student_only) c.mode = DualMode::StudentOnly;
    return doc.located(
        [&] { return std::make_unique<DualDnn<T>>(c, sparse_columns, num_dense, ctx); });
  }
  const EmbeddingMlpConfig c = read_embedding_mlp(doc, common);
  return doc.located(
      [&] { return std::make_unique<EmbeddingMlp<T>>(c, sparse_columns, num_dense, ctx); });
}

template std::unique_ptr<Model<float>> load_model<float>(const std::string&,
                                                         const std::vector<std::string>&, int64_t,
                                                         const Context&, bool);
template std::unique_ptr<Model<double>> load_model<double>(const std::string&,
                                                           const std::vector<std::string>&, int64_t,
                                                           const Context&, bool);

}  // namespace lockstep::models

// Loading model configurations from TOML (format: docs/configuration.md) and building models.
#include "io/toml_util.h"
#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"
#include "models/config_common.h"

namespace lockstep::models {

namespace {
constexpr const char* kKinds = "embedding_mlp, din, bst";

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
  LOCKSTEP_CHECK(c.model, "{}: missing [model] table", doc.path());
  c.kind = doc.get_string(*c.model, "model", "kind", "embedding_mlp");
  if (c.kind != "embedding_mlp" && c.kind != "din" && c.kind != "bst")
    doc.fail(*c.model->get("kind"),
             fmt::format("model.kind = '{}' is not a model: use one of {}", c.kind, kKinds));
  if (const toml::table* opt = doc.get_table(root, "", "optimizer"))
    c.dense_optimizer = read_optimizer_config(doc, *opt, "optimizer", c.dense_optimizer);
  if (const toml::table* opt = doc.get_table(root, "", "sparse_optimizer"))
    c.sparse_optimizer = read_optimizer_config(doc, *opt, "sparse_optimizer", c.sparse_optimizer);
  return c;
}

template <class Config>
Config validated(const io::TomlDoc& doc, Config c) {
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", doc.path(), e.what()));
  }
  return c;
}

EmbeddingMlpConfig read_embedding_mlp(const io::TomlDoc& doc, const Common& common) {
  const toml::table& m = *common.model;
  doc.check_keys(m, "model", {"kind", "use_dense", "mlp", "tables", "fields"});
  EmbeddingMlpConfig c;
  c.seed = common.seed;
  c.dense_optimizer = common.dense_optimizer;
  c.sparse_optimizer = common.sparse_optimizer;
  c.use_dense = doc.get_bool(m, "model", "use_dense", c.use_dense);
  if (const toml::table* mlp = doc.get_table(m, "model", "mlp"))
    c.mlp = read_mlp_config(doc, *mlp, "model.mlp", c.mlp);
  c.tables = read_table_configs(doc, m, "model");
  c.fields = read_field_configs(doc, m, "model");
  return validated(doc, c);
}

std::vector<std::string> read_names(const io::TomlDoc& doc, const toml::table& t,
                                    std::string_view prefix, std::string_view key,
                                    std::vector<std::string> def) {
  const toml::node* node = t.get(key);
  if (!node) return def;
  const toml::array* arr = node->as_array();
  if (!arr) doc.fail(*node, fmt::format("{}.{} must be an array of column names", prefix, key));
  std::vector<std::string> out;
  for (const auto& el : *arr) {
    if (!el.is_string()) doc.fail(el, fmt::format("{}.{} must hold strings", prefix, key));
    out.push_back(*el.value<std::string>());
  }
  return out;
}

DinConfig read_din(const io::TomlDoc& doc, const Common& common) {
  const toml::table& m = *common.model;
  doc.check_keys(m, "model", {"kind", "use_dense", "mlp", "tables", "fields", "din"});
  DinConfig c;
  c.seed = common.seed;
  c.dense_optimizer = common.dense_optimizer;
  c.sparse_optimizer = common.sparse_optimizer;
  c.use_dense = doc.get_bool(m, "model", "use_dense", c.use_dense);
  if (const toml::table* mlp = doc.get_table(m, "model", "mlp"))
    c.mlp = read_mlp_config(doc, *mlp, "model.mlp", c.mlp);
  c.tables = read_table_configs(doc, m, "model");
  c.fields = read_field_configs(doc, m, "model");
  if (const toml::table* din = doc.get_table(m, "model", "din")) {
    doc.check_keys(*din, "model.din", {"query", "keys", "attention"});
    c.query = read_names(doc, *din, "model.din", "query", c.query);
    c.keys = read_names(doc, *din, "model.din", "keys", c.keys);
    if (const toml::table* att = doc.get_table(*din, "model.din", "attention")) {
      doc.check_keys(*att, "model.din.attention",
                     {"hidden", "activation", "softmax", "leaky_slope", "prelu_init", "dice_eps",
                      "dice_momentum"});
      c.attention.activation =
          read_activation_config(doc, *att, "model.din.attention", c.attention.activation);
      c.attention.hidden =
          doc.get_int_array(*att, "model.din.attention", "hidden", c.attention.hidden, 1, 1 << 16);
      c.attention.softmax = doc.get_bool(*att, "model.din.attention", "softmax", c.attention.softmax);
    }
  }
  return validated(doc, c);
}
BstConfig read_bst(const io::TomlDoc& doc, const Common& common) {
  const toml::table& m = *common.model;
  doc.check_keys(m, "model", {"kind", "use_dense", "mlp", "tables", "fields", "bst"});
  BstConfig c;
  c.seed = common.seed;
  c.dense_optimizer = common.dense_optimizer;
  c.sparse_optimizer = common.sparse_optimizer;
  c.use_dense = doc.get_bool(m, "model", "use_dense", c.use_dense);
  if (const toml::table* mlp = doc.get_table(m, "model", "mlp"))
    c.mlp = read_mlp_config(doc, *mlp, "model.mlp", c.mlp);
  c.tables = read_table_configs(doc, m, "model");
  c.fields = read_field_configs(doc, m, "model");
  if (const toml::table* bst = doc.get_table(m, "model", "bst")) {
    const std::string p = "model.bst";
    doc.check_keys(*bst, p, {"target", "sequence", "time_gap", "blocks", "output", "transformer"});
    c.target = read_names(doc, *bst, p, "target", c.target);
    c.sequence = read_names(doc, *bst, p, "sequence", c.sequence);
    c.time_gap = doc.get_string(*bst, p, "time_gap", c.time_gap);
    c.blocks = doc.get_int(*bst, p, "blocks", c.blocks, 1, 64);
    if (const toml::node* n = bst->get("output")) {
      const std::string name = doc.get_string(*bst, p, "output", "");
      c.output = doc.at(*n, [&] { return parse_bst_output(name, p + ".output"); });
    }
    if (const toml::table* tr = doc.get_table(*bst, p, "transformer")) {
      const std::string q = p + ".transformer";
      doc.check_keys(*tr, q, {"heads", "ffn_width", "leaky_slope", "dropout", "layer_norm_eps"});
      auto& t = c.transformer;
      t.heads = doc.get_int(*tr, q, "heads", t.heads, 1, 1024);
      t.ffn_width = doc.get_int(*tr, q, "ffn_width", t.ffn_width, 1, int64_t{1} << 20);
      t.leaky_slope = static_cast<float>(doc.get_float(*tr, q, "leaky_slope", t.leaky_slope, 0, 1));
      t.dropout = static_cast<float>(doc.get_float(*tr, q, "dropout", t.dropout, 0, 0.95));
      t.layer_norm_eps =
          static_cast<float>(doc.get_float(*tr, q, "layer_norm_eps", t.layer_norm_eps, 1e-12, 1));
    }
  }
  return validated(doc, c);
}
}  // namespace

BstConfig load_bst_config(const std::string& path) {
  const io::TomlDoc doc(path);
  const Common common = read_common(doc);
  if (common.kind != "bst")
    doc.fail(*common.model->get("kind"), fmt::format("model.kind = '{}': expected bst here", common.kind));
  return read_bst(doc, common);
}

EmbeddingMlpConfig load_embedding_mlp_config(const std::string& path) {
  const io::TomlDoc doc(path);
  const Common common = read_common(doc);
  if (common.kind != "embedding_mlp")
    doc.fail(*common.model->get("kind"),
             fmt::format("model.kind = '{}': expected embedding_mlp here", common.kind));
  return read_embedding_mlp(doc, common);
}

DinConfig load_din_config(const std::string& path) {
  const io::TomlDoc doc(path);
  const Common common = read_common(doc);
  if (common.kind != "din")
    doc.fail(*common.model->get("kind"), fmt::format("model.kind = '{}': expected din here", common.kind));
  return read_din(doc, common);
}

std::string model_kind(const std::string& path) {
  const io::TomlDoc doc(path);
  return read_common(doc).kind;
}

template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path,
                                     const std::vector<std::string>& sparse_columns,
                                     int64_t num_dense, const Context& ctx) {
  const io::TomlDoc doc(path);
  const Common common = read_common(doc);
  if (common.kind == "din")
    return std::make_unique<Din<T>>(read_din(doc, common), sparse_columns, num_dense, ctx);
  if (common.kind == "bst")
    return std::make_unique<Bst<T>>(read_bst(doc, common), sparse_columns, num_dense, ctx);
  return std::make_unique<EmbeddingMlp<T>>(read_embedding_mlp(doc, common), sparse_columns,
                                           num_dense, ctx);
}

template std::unique_ptr<Model<float>> load_model<float>(const std::string&,
                                                         const std::vector<std::string>&, int64_t,
                                                         const Context&);
template std::unique_ptr<Model<double>> load_model<double>(const std::string&,
                                                           const std::vector<std::string>&,
                                                           int64_t, const Context&);

}  // namespace lockstep::models

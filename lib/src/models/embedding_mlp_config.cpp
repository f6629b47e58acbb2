// Loading EmbeddingMlpConfig from TOML (format documented in docs/configuration.md).
#include "io/toml_util.h"
#include "lockstep/models/embedding_mlp.h"
#include "models/config_common.h"

namespace lockstep::models {

EmbeddingMlpConfig load_embedding_mlp_config(const std::string& path) {
  const io::TomlDoc doc(path);
  const toml::table& root = doc.root();
  doc.check_keys(root, "", {"seed", "model", "optimizer", "sparse_optimizer", "train", "data"});
  EmbeddingMlpConfig c;
  c.seed = static_cast<uint64_t>(doc.get_int(root, "", "seed", 1, 0, INT64_MAX));
  const toml::table* model = doc.get_table(root, "", "model");
  LOCKSTEP_CHECK(model, "{}: missing [model] table", path);
  doc.check_keys(*model, "model", {"kind", "use_dense", "mlp", "tables", "fields"});
  const std::string kind = doc.get_string(*model, "model", "kind", "embedding_mlp");
  if (kind != "embedding_mlp")
    doc.fail(*model->get("kind"),
             fmt::format("model.kind = '{}' is not supported here: use embedding_mlp", kind));
  c.use_dense = doc.get_bool(*model, "model", "use_dense", c.use_dense);
  if (const toml::table* mlp = doc.get_table(*model, "model", "mlp"))
    c.mlp = read_mlp_config(doc, *mlp, "model.mlp", c.mlp);
  c.tables = read_table_configs(doc, *model, "model");
  c.fields = read_field_configs(doc, *model, "model");
  if (const toml::table* opt = doc.get_table(root, "", "optimizer"))
    c.dense_optimizer = read_optimizer_config(doc, *opt, "optimizer", c.dense_optimizer);
  if (const toml::table* opt = doc.get_table(root, "", "sparse_optimizer"))
    c.sparse_optimizer = read_optimizer_config(doc, *opt, "sparse_optimizer", c.sparse_optimizer);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  return c;
}

}  // namespace lockstep::models

// The built-in models of lockstep-train (no --config): presets for any data schema.
#include <algorithm>

#include "lockstep/models/factory.h"

namespace lockstep::models {

namespace {
std::vector<std::string> sparse_column_names(const data::Schema& schema) {
  std::vector<std::string> names;
  for (int64_t c : schema.sparse_columns()) names.push_back(schema.columns()[c].name);
  return names;
}

/// The sequence (max_len > 0) version of every field whose column is a sequence column.
std::vector<embedding::FieldConfig> sequence_fields(const data::Schema& schema,
                                                    const std::vector<embedding::FieldConfig>& fields) {
  std::vector<embedding::FieldConfig> out;
  for (const auto& f : fields) {
    const auto& col = schema.columns()[schema.find(f.column)];
    if (col.kind == data::ColumnKind::kSequence) out.push_back({f.column, f.table, col.max_len});
  }
  return out;
}
}  // namespace

EmbeddingMlpConfig preset_embedding_mlp_config(const data::Schema& schema, int64_t table_rows) {
  EmbeddingMlpConfig c;
  const auto names = sparse_column_names(schema);
  const auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  for (const auto& name : names) {
    std::string table = name;
    if (name == "hist_items" && has("item")) table = "item";
    if (name == "hist_cats" && has("item_cat")) table = "item_cat";
    if (table == name) c.tables.push_back({name, table_rows, 16, embedding::Pooling::Mean, 0.05f});
    c.fields.push_back({name, table});
  }
  return c;
}

DinConfig preset_din_config(const data::Schema& schema, int64_t table_rows) {
  const auto base = preset_embedding_mlp_config(schema, table_rows);
  DinConfig c;
  c.tables = base.tables;
  c.fields = base.fields;
  for (auto& f : c.fields) {
    const auto& col = schema.columns()[schema.find(f.column)];
    if (col.kind == data::ColumnKind::kSequence) f.max_len = col.max_len;
  }
  return c;
}

BstConfig preset_bst_config(const data::Schema& schema, int64_t table_rows) {
  const auto din = preset_din_config(schema, table_rows);
  BstConfig c;
  c.tables = din.tables;
  c.fields = din.fields;
  return c;
}

DualConfig preset_dual_config(const data::Schema& schema, int64_t table_rows) {
  const auto base = preset_embedding_mlp_config(schema, table_rows);
  DualConfig c;
  c.tables = base.tables;
  c.fields = base.fields;  // every column pooled (history: mean)
  for (auto& f : sequence_fields(schema, base.fields)) c.fields.push_back(f);
  return c;
}

std::string preset_config_text(const std::string& kind, int64_t table_rows) {
  if (kind != "embedding_mlp" && kind != "din" && kind != "bst" && kind != "dual")
    throw Error(fmt::format("'{}' is not a built-in model: use embedding_mlp, din, bst or dual",
                            kind));
  check_range("--table-rows", table_rows, int64_t{1}, int64_t{1} << 40);
  // The defaults of the config structs are the models' settings; only the tables are written.
  return fmt::format(
      "# The built-in model '{}' of lockstep-train (models::preset_config_text): one table per\n"
      "# column of the data, the history sharing the table of its target.\n"
      "seed = 1\n"
      "\n"
      "[model]\n"
      "kind = \"{}\"\n"
      "\n"
      "[model.tables_per_column]\n"
      "rows = {}\n"
      "dim = 16\n"
      "pooling = \"mean\"\n"
      "init_scale = 0.05\n"
      "share = {{ hist_items = \"item\", hist_cats = \"item_cat\" }}  # where the data has them\n",
      kind, kind, table_rows);
}

template <class T>
std::unique_ptr<Model<T>> make_preset_model(const std::string& kind, const data::Schema& schema,
                                            int64_t table_rows, const Context& ctx,
                                            bool student_only) {
  const std::string text = preset_config_text(kind, table_rows);
  LOCKSTEP_CHECK(!student_only || kind == "dual",
                 "student-only training needs the dual model, not '{}'", kind);
  return build_model<T>(text, fmt::format("built-in model {}", kind), schema, ctx, student_only);
}

template std::unique_ptr<Model<float>> make_preset_model<float>(const std::string&,
                                                                const data::Schema&, int64_t,
                                                                const Context&, bool);
template std::unique_ptr<Model<double>> make_preset_model<double>(const std::string&,
                                                                  const data::Schema&, int64_t,
                                                                  const Context&, bool);

}  // namespace lockstep::models

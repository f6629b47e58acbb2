#pragma once
// Building any model from its TOML configuration (docs/configuration.md).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/data/schema.h"
#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/model.h"

namespace lockstep::models {

/// The model kind of a configuration file ([model] kind: embedding_mlp, din, bst, dual).
std::string model_kind(const std::string& path);

/// Reads a DIN configuration (kind = "din"): see docs/configuration.md.
DinConfig load_din_config(const std::string& path);
/// Reads a BST configuration (kind = "bst").
BstConfig load_bst_config(const std::string& path);
/// Reads a dual DNN configuration (kind = "dual").
DualConfig load_dual_config(const std::string& path);

/// model_kind() and the load_*_config() readers over TOML text in memory; `source` stands for
/// the path in error messages. (load_embedding_mlp_config's twin is in embedding_mlp.h.)
std::string parse_model_kind(std::string_view toml_text, const std::string& source = "config");
DinConfig parse_din_config(std::string_view toml_text, const std::string& source = "config");
BstConfig parse_bst_config(std::string_view toml_text, const std::string& source = "config");
DualConfig parse_dual_config(std::string_view toml_text, const std::string& source = "config");

/// Builds the model a configuration file describes, allocated and initialised on ctx.
/// `sparse_columns` and `num_dense` describe the data (Batch::sparse order, Batch::dense width).
/// student_only: the dual model in DualMode::StudentOnly (Error for another kind). Errors name
/// the file, line and key, also those found only against the data (a field whose column the
/// data lacks) or the embedding layout (fields that are not consecutive, widths that differ).
/// This overload knows no sequence columns: the shorthand [model.tables_per_column] then treats
/// every column as pooled (use the Schema overload or build_model for din, bst and dual).
template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path,
                                     const std::vector<std::string>& sparse_columns,
                                     int64_t num_dense, const Context& ctx,
                                     bool student_only = false);
/// The same for data described by `schema` (its sparse and sequence columns, their max_len, and
/// its dense width), which resolves the shorthand [model.tables_per_column].
template <class T>
std::unique_ptr<Model<T>> load_model(const std::string& path, const data::Schema& schema,
                                     const Context& ctx, bool student_only = false);

/// Builds the model the TOML text describes, for data with `schema` (as load_model; `source`
/// names the text in errors: "<source>:<line>", or "--set <arg>" for a line apply_overrides
/// wrote).
template <class T>
std::unique_ptr<Model<T>> build_model(std::string_view toml_text, const std::string& source,
                                      const data::Schema& schema, const Context& ctx,
                                      bool student_only = false);

/// `toml_text` with each "key=value" override applied, in order (lockstep-train --set): `key` is
/// dotted (model.mlp.widths, model.tables[0].rows, seed); `value` a TOML value (a bare word such
/// as adam reads as a string). Keys that do not exist yet are added (their tables too), so any
/// key a configuration may hold can be set; whether it is allowed is checked when the model is
/// built, and an error there names the override ("--set model.mlp.wdiths=[64,1]: unknown key
/// ..."). The text is edited in place: the other lines keep their content and line numbers in
/// errors; overridden lines carry a "# set by --set <arg>" comment. Error naming the override
/// when the key or value cannot be written (a key through a non-table, an index past an
/// array's end, a value that is not TOML); `source` names the text for its syntax errors.
std::string apply_overrides(std::string_view toml_text, const std::vector<std::string>& overrides,
                            const std::string& source);

// ---- Built-in models (lockstep-train without --config), for any schema: one table of
// `table_rows` rows (dim 16, mean pooling) per sparse column, except that a history column
// shares the table of its target column (hist_items -> item, hist_cats -> item_cat), so history
// and target embeddings live in one space.

/// Every column pooled; MLP and optimizers: the EmbeddingMlpConfig defaults.
EmbeddingMlpConfig preset_embedding_mlp_config(const data::Schema& schema, int64_t table_rows);
/// The history columns are sequences (max_len from the schema) attended with the target item ⊕
/// category; attention 80-40, MLP 200-80-1 (the DinConfig defaults).
DinConfig preset_din_config(const data::Schema& schema, int64_t table_rows);
/// Sequences as for DIN, target item ⊕ category prepended; 1 block, 8 heads, FFN 32, read-out
/// at the target, MLP 1024-512-256-1 (the BstConfig defaults).
BstConfig preset_bst_config(const data::Schema& schema, int64_t table_rows);
/// dual-bench (docs/dual_dnn.md): every column pooled (history: mean) for both towers and the history
/// also as a sequence attended by the teacher; teacher = DIN attention + 3-layer cross network
/// + MLP 512-256-128-1; student = MLP 128-64-1 (the DualConfig defaults).
DualConfig preset_dual_config(const data::Schema& schema, int64_t table_rows);

/// The TOML text of built-in model `kind` (embedding_mlp, din, bst, dual) with `table_rows` rows
/// per table, in the shorthand [model.tables_per_column], so that it fits any schema: what
/// lockstep-train builds without --config (and what --set edits). build_model() of this text
/// builds the model the preset_*_config() structs describe, for the schemas they accept. Error
/// for another kind.
std::string preset_config_text(const std::string& kind, int64_t table_rows);

/// The built-in model `kind` (embedding_mlp, din, bst, dual) for `schema`: build_model() of
/// preset_config_text(kind, table_rows), allocated and
/// initialised on ctx. student_only: the dual model in DualMode::StudentOnly (Error for another
/// kind).
template <class T>
std::unique_ptr<Model<T>> make_preset_model(const std::string& kind, const data::Schema& schema,
                                            int64_t table_rows, const Context& ctx,
                                            bool student_only = false);

}  // namespace lockstep::models

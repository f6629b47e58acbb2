#pragma once
// Schema: what each tab-separated field of a text record holds and where it lands in a Batch.
//
// A schema is an ordered list of columns, one per field of a record. Exactly one column is the
// label. Dense columns are concatenated, in schema order, into Batch::dense; sparse and
// sequence columns map, in schema order, onto Batch::sparse (slot 0, 1, ...). Ignore columns
// are parsed over and dropped.
//
// On disk a schema is TOML, one [[column]] table per field:
//
//   [[column]]
//   name = "click"
//   kind = "label"
//
//   [[column]]
//   name = "hist_items"
//   kind = "sequence"
//   max_len = 50
//
// An optional [format] table says how a record is written (tab-separated by default; CSV with a
// header, libsvm, libfm) and dense columns may carry a missing value, a clip range and a
// transform. See docs/data.md for every field and its range.

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/data/batch.h"

namespace lockstep::data {

enum class ColumnKind {
  kLabel,     ///< one float in [0, 1] (usually 0 or 1)
  kDense,     ///< `dim` comma-separated finite floats
  kSparse,    ///< multi-hot ids, comma-separated, in any order; empty field = no ids
  kSequence,  ///< ordered ids, oldest first, at most `max_len` kept (the most recent ones)
  kIgnore,    ///< skipped
};

/// "label", "dense", "sparse", "sequence", "ignore".
std::string_view to_string(ColumnKind kind);

/// How a dense value is transformed after clipping: none, or log(1 + x).
enum class Transform { kNone, kLog1p };
/// "none", "log1p".
std::string_view to_string(Transform transform);

/// How records are written in a text file (the [format] table of a schema).
enum class FormatKind {
  kTsv,     ///< delimited, one field per schema column; default separator tab, no header
  kCsv,     ///< delimited; default separator ',', a header line, "quoted" fields
  kLibsvm,  ///< "label id:value id:value ...": every pair feeds the one feature column
  kLibfm,   ///< "label field:id:value ...": field f (0-based) feeds the f-th feature column
};
/// "tsv", "csv", "libsvm", "libfm".
std::string_view to_string(FormatKind kind);

/// The [format] of a schema. Delimited kinds (tsv, csv) have one field per schema column, in
/// schema order, or matched by name to a header line. A "feature column" is any column but the
/// label, in schema order.
struct TextFormat {
  FormatKind kind = FormatKind::kTsv;
  char separator = '\t';    ///< delimited: between fields
  char id_separator = ',';  ///< between the ids (or dense values) of one field
  /// delimited: the first line of each file names its fields; schema columns are found by name
  /// (fields the schema does not name are skipped), so the file's field order is free.
  bool header = false;
  /// delimited: a field may be enclosed in double quotes (then it may hold separators; "" is a
  /// quote). Records still end at a newline.
  bool quotes = false;

  /// The defaults of `kind` (csv: ',' + header + quotes; the others: tab, no header).
  static TextFormat of(FormatKind kind);
  bool delimited() const { return kind == FormatKind::kTsv || kind == FormatKind::kCsv; }
  bool operator==(const TextFormat& o) const {
    return kind == o.kind && separator == o.separator && id_separator == o.id_separator &&
           header == o.header && quotes == o.quotes;
  }
  bool operator!=(const TextFormat& o) const { return !(*this == o); }
};

/// Limits enforced by validation.
inline constexpr int64_t kMaxDenseDim = 65536;
inline constexpr int64_t kMaxSequenceLength = 100000;

/// One field of a record. Build with the factories below; a Schema validates the set.
struct Column {
  std::string name;  ///< [A-Za-z0-9_.-]+, unique within the schema
  ColumnKind kind = ColumnKind::kIgnore;
  int64_t dim = 0;      ///< dense: values per record, in [1, kMaxDenseDim]; 0 for other kinds
  int64_t max_len = 0;  ///< sequence: ids kept, in [1, kMaxSequenceLength]; 0 for other kinds
  /// sparse/sequence only: tokens are arbitrary strings hashed to ids with XXH64 seeded by
  /// hash_seed(); otherwise tokens are decimal uint64 ids taken as they are.
  bool hash = false;
  /// dense only: the value of an empty field (without one, an empty dense field is a bad record);
  /// in libsvm/libfm records, the value of every index a record does not mention (default 0).
  bool has_missing = false;
  float missing = 0.0f;
  /// dense only: values are clipped to [clip_min, clip_max], then transformed.
  float clip_min = -std::numeric_limits<float>::infinity();
  float clip_max = std::numeric_limits<float>::infinity();
  Transform transform = Transform::kNone;

  /// XXH64 of the column name (seed 0): the seed for hashing this column's tokens, so equal
  /// strings in different columns get unrelated ids.
  uint64_t hash_seed() const;

  static Column label(std::string name);
  static Column dense(std::string name, int64_t dim);
  static Column sparse(std::string name, bool hash = false);
  static Column sequence(std::string name, int64_t max_len, bool hash = false);
  static Column ignore(std::string name);

  bool operator==(const Column& other) const;
  bool operator!=(const Column& other) const { return !(*this == other); }

 private:
  static Column make(std::string name, ColumnKind kind, int64_t dim, int64_t max_len, bool hash);
};

/// XXH64(token, seed): the id of a string token in a hashed column (seed = Column::hash_seed()).
uint64_t hash_token(std::string_view token, uint64_t seed);

/// An immutable, validated list of columns. Copyable; thread-safe for concurrent reads.
class Schema {
 public:
  /// An empty schema (no columns); only useful as a placeholder to assign to.
  Schema() = default;
  /// Validates `columns` and throws lockstep::Error on the first problem: a bad or duplicate
  /// name, a field out of range or not meaningful for the kind, not exactly one label.
  explicit Schema(std::vector<Column> columns, TextFormat format = {});

  /// A built-in schema: "criteo" (label, I1..I13 dense with missing = 0, clip at 0 and log1p,
  /// C1..C26 hashed sparse; tab-separated, as in the Criteo display-ads data). Throws Error
  /// listing the presets for another name.
  static Schema preset(std::string_view name);
  /// preset(spec) when `spec` names a preset, else load(spec).
  static Schema load_or_preset(const std::string& spec);

  /// Reads a TOML schema file. Errors name the file, the line and the field, e.g.
  /// "schema.toml:12: column 'hist' field 'max_len' = 0 is out of range: must be in [1, 100000]".
  static Schema load(const std::string& path);
  /// Parses TOML text; `source` is the name used in error messages (usually the file path).
  static Schema parse(std::string_view toml_text, std::string_view source = "schema");
  /// The TOML form that load()/parse() read back into an equal schema.
  std::string to_toml() const;
  /// Writes to_toml() to `path` atomically (temporary file + rename).
  void save(const std::string& path) const;

  const std::vector<Column>& columns() const { return columns_; }
  const TextFormat& format() const { return format_; }
  int64_t num_columns() const { return static_cast<int64_t>(columns_.size()); }
  /// Index of the label column.
  int64_t label_column() const { return label_column_; }
  /// Sum of the dense columns' dims: the row width of Batch::dense.
  int64_t num_dense() const { return num_dense_; }
  /// Number of sparse + sequence columns: the size of Batch::sparse.
  int64_t num_sparse() const { return static_cast<int64_t>(sparse_columns_.size()); }
  /// For each Batch::sparse slot, the index of its column.
  const std::vector<int64_t>& sparse_columns() const { return sparse_columns_; }
  /// The Batch::sparse slot of column `column`, or -1 when it is not sparse/sequence.
  int64_t sparse_slot(int64_t column) const;
  /// The offset of dense column `column` within a Batch::dense row, or -1 when not dense.
  int64_t dense_offset(int64_t column) const;
  /// Index of the column called `name`, or -1.
  int64_t find(std::string_view name) const;

  bool operator==(const Schema& other) const {
    return columns_ == other.columns_ && format_ == other.format_;
  }
  bool operator!=(const Schema& other) const { return !(*this == other); }

 private:
  std::vector<Column> columns_;
  TextFormat format_;
  int64_t label_column_ = -1;
  int64_t num_dense_ = 0;
  std::vector<int64_t> sparse_columns_;
  std::vector<int64_t> slot_or_offset_;  // per column: sparse slot, dense offset, or -1
};

/// An empty batch with the layout of `schema`: size 0, one SparseColumn per sparse slot.
Batch make_empty_batch(const Schema& schema);

/// Throws lockstep::Error when `batch` does not have the layout `schema` describes: vector
/// sizes, CSR offsets (start at 0, non-decreasing, end at keys.size()), labels finite and in
/// [0, 1]. `what` names the batch in the message.
void check_batch(const Schema& schema, const Batch& batch, std::string_view what = "batch");

}  // namespace lockstep::data

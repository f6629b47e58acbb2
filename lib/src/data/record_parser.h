#pragma once
// One text record (a line) → one row of a Batch, in any of the schema's formats (tsv, csv with a
// header, libsvm, libfm), with the dense columns' missing value, clip and transform applied.
// Shared by TextReader, the file sources and the fuzz targets.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/data/schema.h"

namespace lockstep::data {

/// Why a record was rejected: `reason` is a short stable key for counting ("field count",
/// "bad number", "label range", "bad id", "dense count", "empty field", "bad pair",
/// "index range", "non-binary value", "bad quotes"); `message` says what and where within the
/// record, e.g. "column 'user' (field 3): 'x' is not a decimal uint64 id" (no file or line).
struct BadRecord {
  std::string reason;
  std::string message;
};

class RecordParser {
 public:
  /// The schema must have at least one column.
  explicit RecordParser(Schema schema);

  const Schema& schema() const { return schema_; }
  /// Whether the format starts every file with a header line (set_header() before parse()).
  bool needs_header() const { return schema_.format().delimited() && schema_.format().header; }
  /// Reads a header line: maps the file's fields to schema columns by name. Throws Error
  /// ("<source>:1: ...") when a schema column is missing or a name repeats.
  void set_header(std::string_view line, const std::string& source);

  /// Appends the record `line` (without its newline; a trailing "\r" is ignored) to `out`, whose
  /// sparse columns must match the schema, with sample id `sample_id`. Returns false and leaves
  /// `out` as it was when the record is bad, with the reason in `bad`.
  bool parse(std::string_view line, Batch& out, uint64_t sample_id, BadRecord& bad);

 private:
  struct Bad;
  [[noreturn]] void fail(const char* reason, int64_t column, std::string problem) const;
  float parse_float(int64_t column, std::string_view token) const;
  uint64_t parse_id(int64_t column, std::string_view token) const;
  void parse_ids(int64_t column, std::string_view text, std::vector<uint64_t>& keys) const;
  void dense_value(int64_t column, float* slot, float value) const;
  void parse_delimited(std::string_view line, Batch& out);
  void split_fields(std::string_view line);
  void parse_pairs(std::string_view line, Batch& out);

  Schema schema_;
  std::vector<int64_t> feature_columns_;  // libsvm/libfm: field f -> column index
  std::vector<int64_t> field_column_;     // delimited: file field -> column (-1: skipped)
  int64_t expected_fields_ = 0;
  std::vector<std::string_view> fields_;
  std::vector<std::string> unquoted_;
  int64_t field_ = -1;  // the file field being parsed (for messages), -1 when not delimited
  std::vector<int64_t> scratch_columns_;  // libsvm/libfm: the column of each id of a record
  std::vector<uint64_t> scratch_ids_;
  std::vector<std::pair<size_t, size_t>> sizes_;  // per slot: keys, offsets before a record
};

}  // namespace lockstep::data

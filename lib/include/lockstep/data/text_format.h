#pragma once
// Text records: one record per line, tab-separated fields in schema order.
//
//   label     one float in [0, 1], e.g. "1"
//   dense     exactly `dim` comma-separated finite floats, e.g. "0.5,-1.25,3e-2"
//   sparse    comma-separated ids in any order; an empty field means no ids
//   sequence  comma-separated ids, oldest first; an empty field means no ids. A sequence longer
//             than the column's max_len keeps its most recent (last) max_len ids.
//   ignore    anything without a tab; skipped
//
// Ids are decimal uint64 ("0" .. "18446744073709551615", no sign, no spaces) unless the
// column sets hash = true: then every non-empty token is a string hashed with
// hash_token(token, column.hash_seed()). A line may end in "\r\n". Every line is a record:
// record i (0-based) is line i + 1, so error messages and sample ids point at the same thing.
// docs/data.md has the full description and an example.

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>

#include "lockstep/data/batch.h"
#include "lockstep/data/schema.h"

namespace lockstep::data {

/// Streams batches of records from a text file, in file order.
///
/// Sharding: the reader returns only the records whose 0-based index i satisfies
/// i % num_shards == shard, so num_shards readers with shards 0..num_shards-1 together return
/// every record exactly once. Records of other shards are skipped without being parsed (their
/// errors are reported by the reader that owns them). Batch::sample_ids holds
/// first_sample_id + i.
///
/// Errors throw lockstep::Error naming the file, the line, the column and the bad token, e.g.
/// "train.tsv:17: column 'hist_items' (field 6): 'x12' is not a decimal uint64 id".
/// Move-only; not thread-safe (one reader per thread). Holds the file open until destroyed.
class TextReader {
 public:
  /// Opens `path`; throws Error when it cannot be read or the shard arguments are invalid.
  TextReader(std::string path, Schema schema, int64_t shard = 0, int64_t num_shards = 1,
             uint64_t first_sample_id = 0);
  ~TextReader();
  TextReader(TextReader&&) noexcept;
  TextReader& operator=(TextReader&&) noexcept;
  TextReader(const TextReader&) = delete;
  TextReader& operator=(const TextReader&) = delete;

  /// Replaces `out` with the next at most `max_batch` (>= 1) records of this shard, reusing its
  /// capacity. Returns false, with out.size == 0, when the shard is exhausted. After an
  /// exception `out` is unspecified and the reader must not be used again.
  bool next(Batch& out, int64_t max_batch);

  const std::string& path() const;
  const Schema& schema() const;
  /// Lines read so far (records of every shard): the line number of the last record read.
  int64_t lines_read() const;
  /// Records returned so far by next().
  int64_t records_returned() const;

 private:
  friend Batch parse_text(std::string_view text, const Schema& schema, const std::string& source);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Reads every record of `path` into one batch (convenience for small files and tests).
Batch read_text(const std::string& path, const Schema& schema);

/// Parses `text`, the whole contents of a records file, into one batch exactly as read_text()
/// reads a file; error messages name `source` in place of the path ("<source>:3: ...").
Batch parse_text(std::string_view text, const Schema& schema, const std::string& source = "text");

/// Appends the records of `batch` to `out` in the text format, one line each ("\n"), so that
/// reading them back gives an identical batch (floats are printed in the shortest form that
/// parses back to the same value; ignore columns are written empty). Throws Error when the
/// batch does not match the schema (check_batch), holds a non-finite dense value, a sequence
/// longer than max_len (it would not read back the same), or the schema has a hashed column
/// (a batch holds the hashed ids, not the original strings: write with hash = false).
void append_text(std::string& out, const Schema& schema, const Batch& batch);

/// append_text() to a stream; throws Error when the stream fails.
void write_text(std::ostream& out, const Schema& schema, const Batch& batch);

/// Writes `batch` as the whole file `path`, atomically (temporary file + rename).
void write_text(const std::string& path, const Schema& schema, const Batch& batch);

}  // namespace lockstep::data

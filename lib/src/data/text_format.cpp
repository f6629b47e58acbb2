#include "lockstep/data/text_format.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <ostream>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/core/atomic_file.h"
#include "data/record_parser.h"
#include "lockstep/core/error.h"

namespace lockstep::data {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

struct TextReader::Impl {
  std::string path;
  Schema schema;
  int64_t shard = 0;
  int64_t num_shards = 1;
  uint64_t first_sample_id = 0;

  std::unique_ptr<std::FILE, FileCloser> file;  // null when the text is all in `buffer`
  std::vector<char> buffer;
  size_t begin = 0, end = 0;  // unread bytes: buffer[begin, end)
  bool at_eof = false;
  int64_t line_number = 0;
  int64_t returned = 0;
  int64_t header_lines = 0;
  std::optional<RecordParser> parser;
  BadRecord bad;

  // The next line without its "\n" (and "\r"), or false at the end of the file. The view is
  // valid until the next call.
  bool read_line(std::string_view& line) {
    while (true) {
      const char* data = buffer.data();
      const void* nl = end > begin ? std::memchr(data + begin, '\n', end - begin) : nullptr;
      if (nl != nullptr || (at_eof && begin < end)) {
        const size_t stop =
            nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - data) : end;
        line = std::string_view(data + begin, stop - begin);
        begin = nl != nullptr ? stop + 1 : end;
        ++line_number;  // (a final "\r" is the parser's to drop)
        return true;
      }
      if (at_eof) return false;
      // Keep the partial line, make room, read more.
      if (begin > 0) {
        std::memmove(buffer.data(), buffer.data() + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      if (end == buffer.size()) buffer.resize(std::max<size_t>(2 * buffer.size(), 4096));
      const size_t got = std::fread(buffer.data() + end, 1, buffer.size() - end, file.get());
      end += got;
      if (got == 0) {
        LOCKSTEP_CHECK(!std::ferror(file.get()), "{}:{}: read error: {}", path, line_number + 1,
                       std::strerror(errno));
        at_eof = true;
      }
    }
  }

  void parse_record(std::string_view line, Batch& out) {
    if (!parser) parser.emplace(schema);
    const uint64_t record = static_cast<uint64_t>(line_number - 1 - header_lines);
    if (!parser->parse(line, out, first_sample_id + record, bad))
      throw Error(fmt::format("{}:{}: {}", path, line_number, bad.message));
  }

  // Reads the header line of a format that has one (before the first record).
  void read_header() {
    if (header_lines > 0 || !schema.format().delimited() || !schema.format().header) return;
    if (!parser) parser.emplace(schema);
    std::string_view line;
    if (!read_line(line)) return;  // an empty file: no header, no records
    parser->set_header(line, path);
    header_lines = 1;
  }

  bool next(Batch& out, int64_t max_batch) {
    out.size = 0;
    out.labels.clear();
    out.dense.clear();
    out.sample_ids.clear();
    out.sparse.resize(static_cast<size_t>(schema.num_sparse()));
    for (SparseColumn& col : out.sparse) {
      col.offsets.assign(1, 0);
      col.keys.clear();
    }
    read_header();
    std::string_view line;
    while (out.size < max_batch && read_line(line)) {
      if ((line_number - 1 - header_lines) % num_shards != shard) continue;
      parse_record(line, out);
    }
    returned += out.size;
    return out.size > 0;
  }
};

TextReader::TextReader(std::string path, Schema schema, int64_t shard, int64_t num_shards,
                       uint64_t first_sample_id)
    : impl_(std::make_unique<Impl>()) {
  check_range("num_shards", num_shards, 1, int64_t{1} << 30);
  check_range("shard", shard, 0, num_shards - 1);
  LOCKSTEP_CHECK(schema.num_columns() > 0, "TextReader for '{}': the schema has no columns", path);
  impl_->path = std::move(path);
  impl_->schema = std::move(schema);
  impl_->shard = shard;
  impl_->num_shards = num_shards;
  impl_->first_sample_id = first_sample_id;
  impl_->file.reset(std::fopen(impl_->path.c_str(), "rb"));
  LOCKSTEP_CHECK(impl_->file != nullptr, "cannot open '{}' for reading: {}", impl_->path,
                 std::strerror(errno));
  // 1 MiB, or less for a smaller regular file (tests, small shards, fuzzing), which then needs no
  // 1 MiB zeroed allocation; read_line() grows the buffer for longer lines either way.
  size_t capacity = size_t{1} << 20;
  struct stat st {};
  if (::fstat(::fileno(impl_->file.get()), &st) == 0 && S_ISREG(st.st_mode))
    capacity = std::min(capacity, static_cast<size_t>(st.st_size) + 1);
  impl_->buffer.resize(capacity);
}

TextReader::~TextReader() = default;
TextReader::TextReader(TextReader&&) noexcept = default;
TextReader& TextReader::operator=(TextReader&&) noexcept = default;

bool TextReader::next(Batch& out, int64_t max_batch) {
  check_range("max_batch", max_batch, 1, int64_t{1} << 40);
  return impl_->next(out, max_batch);
}

const std::string& TextReader::path() const { return impl_->path; }
const Schema& TextReader::schema() const { return impl_->schema; }
int64_t TextReader::lines_read() const { return impl_->line_number; }
int64_t TextReader::records_returned() const { return impl_->returned; }

Batch read_text(const std::string& path, const Schema& schema) {
  TextReader reader(path, schema);
  Batch all;
  reader.next(all, int64_t{1} << 40);
  return all;
}

Batch parse_text(std::string_view text, const Schema& schema, const std::string& source) {
  LOCKSTEP_CHECK(schema.num_columns() > 0, "parse_text for '{}': the schema has no columns",
                 source);
  TextReader::Impl s;  // the whole text in the buffer, no file
  s.path = source;
  s.schema = schema;
  s.buffer.assign(text.begin(), text.end());
  s.end = s.buffer.size();
  s.at_eof = true;
  Batch all;
  s.next(all, int64_t{1} << 40);
  return all;
}

void append_text(std::string& out, const Schema& schema, const Batch& batch) {
  check_batch(schema, batch);
  const auto& columns = schema.columns();
  for (const Column& c : columns) {
    LOCKSTEP_CHECK(!c.hash,
                   "cannot write column '{}' as text: it is hashed (hash = true), and a batch "
                   "holds the hashed ids, not the original strings; write with a schema where "
                   "hash = false (the ids are then written as decimal numbers)",
                   c.name);
  }
  LOCKSTEP_CHECK(schema.format() == TextFormat{},
                 "cannot write records in format '{}': append_text writes the tab-separated "
                 "format (use a schema without a [format] table)",
                 to_string(schema.format().kind));
  for (const Column& c : columns) {
    LOCKSTEP_CHECK(c.transform == Transform::kNone &&
                       c.clip_min == -std::numeric_limits<float>::infinity() &&
                       c.clip_max == std::numeric_limits<float>::infinity(),
                   "cannot write column '{}' as text: it has a clip range or a transform, which "
                   "reading would apply a second time; write with a schema without them",
                   c.name);
  }
  const int64_t num_dense = schema.num_dense();
  auto it = std::back_inserter(out);
  for (int64_t b = 0; b < batch.size; ++b) {
    for (size_t j = 0; j < columns.size(); ++j) {
      const Column& c = columns[j];
      if (j > 0) out.push_back('\t');
      switch (c.kind) {
        case ColumnKind::kLabel:
          fmt::format_to(it, "{}", batch.labels[b]);
          break;
        case ColumnKind::kDense: {
          const float* row =
              batch.dense.data() + b * num_dense + schema.dense_offset(static_cast<int64_t>(j));
          for (int64_t k = 0; k < c.dim; ++k) {
            LOCKSTEP_CHECK(std::isfinite(row[k]),
                           "cannot write sample {}: column '{}' value {} is {}, which the text "
                           "format rejects",
                           b, c.name, k, row[k]);
            if (k > 0) out.push_back(',');
            fmt::format_to(it, "{}", row[k]);
          }
          break;
        }
        case ColumnKind::kSparse:
        case ColumnKind::kSequence: {
          const SparseColumn& col = batch.sparse[schema.sparse_slot(static_cast<int64_t>(j))];
          const int64_t lo = col.offsets[b], hi = col.offsets[b + 1];
          LOCKSTEP_CHECK(c.kind != ColumnKind::kSequence || hi - lo <= c.max_len,
                         "cannot write sample {}: column '{}' holds {} ids but max_len = {} (it "
                         "would not read back the same)",
                         b, c.name, hi - lo, c.max_len);
          for (int64_t k = lo; k < hi; ++k) {
            if (k > lo) out.push_back(',');
            const fmt::format_int id(col.keys[k]);
            out.append(id.data(), id.size());
          }
          break;
        }
        case ColumnKind::kIgnore:
          break;
      }
    }
    out.push_back('\n');
  }
}

void write_text(std::ostream& out, const Schema& schema, const Batch& batch) {
  std::string text;
  append_text(text, schema, batch);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  LOCKSTEP_CHECK(out.good(), "cannot write text records: the output stream failed");
}

void write_text(const std::string& path, const Schema& schema, const Batch& batch) {
  std::string text;
  append_text(text, schema, batch);
  write_file_atomically(path, text);
}

}  // namespace lockstep::data

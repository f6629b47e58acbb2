#include "lockstep/data/text_format.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <ostream>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"

namespace lockstep::data {

namespace {

// Tokens quoted in error messages are cut to this many characters.
constexpr size_t kMaxQuoted = 48;

// Control and non-ASCII bytes become \xHH, so that a binary or mis-encoded record reads safely
// in a terminal or a log.
std::string escaped(std::string_view text) {
  std::string out;
  for (const char ch : text) {
    const auto b = static_cast<unsigned char>(ch);
    if (b >= 0x20 && b < 0x7f && ch != '\\') out += ch;
    else out += fmt::format("\\x{:02x}", b);
  }
  return out;
}

std::string quote(std::string_view token) {
  if (token.size() <= kMaxQuoted) return fmt::format("'{}'", escaped(token));
  return fmt::format("'{}...' ({} characters)", escaped(token.substr(0, kMaxQuoted)),
                     token.size());
}

// Calls f(token) for each ','-separated token of a non-empty field.
template <class F>
void for_each_token(std::string_view field, F&& f) {
  size_t start = 0;
  while (true) {
    const size_t comma = field.find(',', start);
    if (comma == std::string_view::npos) {
      f(field.substr(start));
      return;
    }
    f(field.substr(start, comma - start));
    start = comma + 1;
  }
}

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
  std::vector<std::string_view> fields;

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
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        ++line_number;
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

  [[noreturn]] void fail_field(size_t field, const std::string& problem) const {
    const Column& c = schema.columns()[field];
    throw Error(fmt::format("{}:{}: column '{}' (field {}): {}", path, line_number, c.name,
                            field + 1, problem));
  }

  float parse_float(size_t field, std::string_view token) const {
    float value = 0.0f;
    const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (ec == std::errc::result_out_of_range) {
      fail_field(field, fmt::format("{} is out of the float range", quote(token)));
    }
    if (ec != std::errc() || ptr != token.data() + token.size() || token.empty()) {
      fail_field(field, fmt::format("{} is not a number", quote(token)));
    }
    if (!std::isfinite(value))
      fail_field(field, fmt::format("{} is not a finite number", quote(token)));
    return value;
  }

  void parse_ids(size_t field, std::string_view text, const Column& c,
                 std::vector<uint64_t>& keys) {
    if (text.empty()) return;
    const uint64_t seed = c.hash ? c.hash_seed() : 0;
    for_each_token(text, [&](std::string_view token) {
      if (token.empty()) {
        fail_field(field,
                   fmt::format("empty id in {}: ids are separated by single commas", quote(text)));
      }
      if (c.hash) {
        keys.push_back(hash_token(token, seed));
        return;
      }
      uint64_t id = 0;
      const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), id, 10);
      if (ec == std::errc::result_out_of_range) {
        fail_field(field, fmt::format("{} is out of range for a uint64 id (at most "
                                      "18446744073709551615)",
                                      quote(token)));
      }
      if (ec != std::errc() || ptr != token.data() + token.size()) {
        fail_field(field, fmt::format("{} is not a decimal uint64 id", quote(token)));
      }
      keys.push_back(id);
    });
  }

  void parse_record(std::string_view line, Batch& out) {
    const auto& columns = schema.columns();
    fields.clear();
    size_t start = 0;
    while (true) {
      const size_t tab = line.find('\t', start);
      fields.push_back(line.substr(start, tab == std::string_view::npos ? tab : tab - start));
      if (tab == std::string_view::npos) break;
      start = tab + 1;
    }
    LOCKSTEP_CHECK(fields.size() == columns.size(),
                   "{}:{}: expected {} tab-separated fields (one per schema column), found {}",
                   path, line_number, columns.size(), fields.size());

    const int64_t num_dense = schema.num_dense();
    const size_t dense_row = out.dense.size();
    out.dense.resize(dense_row + static_cast<size_t>(num_dense));
    for (size_t j = 0; j < columns.size(); ++j) {
      const Column& c = columns[j];
      const std::string_view text = fields[j];
      switch (c.kind) {
        case ColumnKind::kLabel: {
          const float y = parse_float(j, text);
          if (!(y >= 0.0f && y <= 1.0f)) {
            fail_field(j,
                       fmt::format("{} is out of range: a label must be in [0, 1]", quote(text)));
          }
          out.labels.push_back(y);
          break;
        }
        case ColumnKind::kDense: {
          float* row = out.dense.data() + dense_row + schema.dense_offset(static_cast<int64_t>(j));
          int64_t count = 0;
          if (!text.empty()) {
            for_each_token(text, [&](std::string_view token) {
              if (count < c.dim) row[count] = parse_float(j, token);
              ++count;
            });
          }
          if (count != c.dim) {
            fail_field(
                j, fmt::format("expected {} comma-separated values (dim), found {}", c.dim, count));
          }
          break;
        }
        case ColumnKind::kSparse:
        case ColumnKind::kSequence: {
          SparseColumn& col = out.sparse[schema.sparse_slot(static_cast<int64_t>(j))];
          const size_t first = col.keys.size();
          parse_ids(j, text, c, col.keys);
          const auto count = static_cast<int64_t>(col.keys.size() - first);
          if (c.kind == ColumnKind::kSequence && count > c.max_len) {
            // Keep the most recent ids: the sequence is oldest first, so drop from the front.
            const auto drop = static_cast<std::ptrdiff_t>(count - c.max_len);
            col.keys.erase(col.keys.begin() + static_cast<std::ptrdiff_t>(first),
                           col.keys.begin() + static_cast<std::ptrdiff_t>(first) + drop);
          }
          col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
          break;
        }
        case ColumnKind::kIgnore:
          break;
      }
    }
    out.sample_ids.push_back(first_sample_id + static_cast<uint64_t>(line_number - 1));
    ++out.size;
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
    std::string_view line;
    while (out.size < max_batch && read_line(line)) {
      if ((line_number - 1) % num_shards != shard) continue;
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

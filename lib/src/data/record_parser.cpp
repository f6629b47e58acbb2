#include "data/record_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "lockstep/core/error.h"

namespace lockstep::data {

namespace {

// Tokens quoted in messages are cut to this many characters.
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

std::string quote(std::string_view token, size_t max = kMaxQuoted) {
  if (token.size() <= max) return fmt::format("'{}'", escaped(token));
  return fmt::format("'{}...' ({} characters)", escaped(token.substr(0, max)), token.size());
}

std::string separator_name(char c) {
  if (c == '\t') return "tab";
  if (c == ' ') return "space";
  return fmt::format("'{}'", escaped(std::string_view(&c, 1)));
}

// Calls f(token) for each `sep`-separated token of a non-empty field.
template <class F>
void for_each_token(std::string_view field, char sep, F&& f) {
  size_t start = 0;
  while (true) {
    const size_t at = field.find(sep, start);
    if (at == std::string_view::npos) {
      f(field.substr(start));
      return;
    }
    f(field.substr(start, at - start));
    start = at + 1;
  }
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

}  // namespace

struct RecordParser::Bad {
  const char* reason;
  std::string message;
};

RecordParser::RecordParser(Schema schema) : schema_(std::move(schema)) {
  LOCKSTEP_CHECK(schema_.num_columns() > 0, "RecordParser: the schema has no columns");
  for (int64_t c = 0; c < schema_.num_columns(); ++c) {
    if (c != schema_.label_column()) feature_columns_.push_back(c);
    field_column_.push_back(c);
  }
  expected_fields_ = schema_.num_columns();
}

void RecordParser::set_header(std::string_view line, const std::string& source) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // a UTF-8 byte order mark
  try {
    split_fields(line);
  } catch (const Bad& b) {  // broken quotes
    throw Error(fmt::format("{}:1: the header line: {}", source, b.message));
  }
  std::unordered_map<std::string_view, int64_t> seen;
  field_column_.assign(fields_.size(), -1);
  std::vector<bool> found(static_cast<size_t>(schema_.num_columns()), false);
  for (size_t j = 0; j < fields_.size(); ++j) {
    const auto [it, inserted] = seen.emplace(fields_[j], static_cast<int64_t>(j));
    LOCKSTEP_CHECK(inserted, "{}:1: the header names field {} twice (fields {} and {})", source,
                   quote(fields_[j]), it->second + 1, j + 1);
    const int64_t c = schema_.find(fields_[j]);
    if (c >= 0) {
      field_column_[j] = c;
      found[static_cast<size_t>(c)] = true;
    }
  }
  for (int64_t c = 0; c < schema_.num_columns(); ++c) {
    const Column& col = schema_.columns()[c];
    LOCKSTEP_CHECK(found[static_cast<size_t>(c)] || col.kind == ColumnKind::kIgnore,
                   "{}:1: the header has no field '{}' (column {} of the schema); it names: {}",
                   source, col.name, c + 1, quote(line, 400));  // a header: every name
  }
  expected_fields_ = static_cast<int64_t>(fields_.size());
}

void RecordParser::fail(const char* reason, int64_t column, std::string problem) const {
  const Column& c = schema_.columns()[column];
  if (field_ >= 0)
    throw Bad{reason, fmt::format("column '{}' (field {}): {}", c.name, field_ + 1, problem)};
  throw Bad{reason, fmt::format("column '{}': {}", c.name, problem)};
}

float RecordParser::parse_float(int64_t column, std::string_view token) const {
  float value = 0.0f;
  const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec == std::errc::result_out_of_range)
    fail("bad number", column, fmt::format("{} is out of the float range", quote(token)));
  if (ec != std::errc() || ptr != token.data() + token.size() || token.empty())
    fail("bad number", column, fmt::format("{} is not a number", quote(token)));
  if (!std::isfinite(value))
    fail("bad number", column, fmt::format("{} is not a finite number", quote(token)));
  return value;
}

uint64_t RecordParser::parse_id(int64_t column, std::string_view token) const {
  const Column& c = schema_.columns()[column];
  if (c.hash) return hash_token(token, c.hash_seed());
  uint64_t id = 0;
  const auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), id, 10);
  if (ec == std::errc::result_out_of_range)
    fail("bad id", column,
         fmt::format("{} is out of range for a uint64 id (at most 18446744073709551615)",
                     quote(token)));
  if (ec != std::errc() || ptr != token.data() + token.size())
    fail("bad id", column, fmt::format("{} is not a decimal uint64 id", quote(token)));
  return id;
}

void RecordParser::parse_ids(int64_t column, std::string_view text,
                             std::vector<uint64_t>& keys) const {
  if (text.empty()) return;
  const char sep = schema_.format().id_separator;
  for_each_token(text, sep, [&](std::string_view token) {
    if (token.empty())
      fail("bad id", column,
           fmt::format("empty id in {}: ids are separated by single {}", quote(text),
                       sep == ',' ? std::string("commas") : separator_name(sep) + " characters"));
    keys.push_back(parse_id(column, token));
  });
}

void RecordParser::dense_value(int64_t column, float* slot, float value) const {
  const Column& c = schema_.columns()[column];
  value = std::min(std::max(value, c.clip_min), c.clip_max);
  if (c.transform == Transform::kLog1p) value = std::log1p(value);
  *slot = value;
}

void RecordParser::split_fields(std::string_view line) {
  const TextFormat& f = schema_.format();
  fields_.clear();
  if (!f.quotes) {
    size_t start = 0;
    while (true) {
      const size_t at = line.find(f.separator, start);
      fields_.push_back(line.substr(start, at == std::string_view::npos ? at : at - start));
      if (at == std::string_view::npos) return;
      start = at + 1;
    }
  }
  // Quoted fields: "a,b" and "say ""hi""". The unquoted text of field i lives in unquoted_[i],
  // filled first and viewed after, so that no view dangles when the vector grows.
  struct Span {
    size_t begin, end;
    bool quoted;
  };
  std::vector<Span> spans;
  size_t pos = 0;
  while (true) {
    if (pos < line.size() && line[pos] == '"') {
      size_t at = pos + 1;
      while (true) {
        const size_t q = line.find('"', at);
        if (q == std::string_view::npos)
          throw Bad{"bad quotes", fmt::format("field {}: the quoted field {} has no closing quote",
                                              spans.size() + 1, quote(line.substr(pos)))};
        if (q + 1 < line.size() && line[q + 1] == '"') {
          at = q + 2;
          continue;
        }
        if (q + 1 < line.size() && line[q + 1] != f.separator)
          throw Bad{"bad quotes",
                    fmt::format("field {}: text after the closing quote in {}", spans.size() + 1,
                                quote(line.substr(pos, q + 2 - pos)))};
        spans.push_back({pos + 1, q, true});
        pos = q + 1;
        break;
      }
    } else {
      const size_t at = line.find(f.separator, pos);
      const size_t end = at == std::string_view::npos ? line.size() : at;
      spans.push_back({pos, end, false});
      pos = end;
    }
    if (pos >= line.size()) break;
    ++pos;  // the separator
    if (pos == line.size()) {
      spans.push_back({pos, pos, false});  // "a," ends with an empty field
      break;
    }
  }
  if (unquoted_.size() < spans.size()) unquoted_.resize(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    const std::string_view raw = line.substr(s.begin, s.end - s.begin);
    if (!s.quoted || raw.find('"') == std::string_view::npos) {
      fields_.push_back(raw);
      continue;
    }
    std::string& u = unquoted_[i];  // never resized below: the view stays valid
    u.clear();
    for (size_t k = 0; k < raw.size(); ++k) {
      u += raw[k];
      if (raw[k] == '"') ++k;  // "" -> "
    }
    fields_.push_back(u);
  }
}

void RecordParser::parse_delimited(std::string_view line, Batch& out) {
  const TextFormat& f = schema_.format();
  split_fields(line);
  if (static_cast<int64_t>(fields_.size()) != expected_fields_) {
    const std::string sep = f.separator == '\t' ? "tab" : fmt::format("'{}'", f.separator);
    throw Bad{"field count",
              fmt::format("expected {} {}-separated fields ({}), found {}", expected_fields_, sep,
                          f.header ? "as in the header" : "one per schema column",
                          fields_.size())};
  }
  const int64_t num_dense = schema_.num_dense();
  const size_t dense_row = out.dense.size();
  out.dense.resize(dense_row + static_cast<size_t>(num_dense));
  bool has_label = false;
  for (size_t j = 0; j < fields_.size(); ++j) {
    const int64_t column = field_column_[j];
    if (column < 0) continue;
    field_ = static_cast<int64_t>(j);
    const Column& c = schema_.columns()[column];
    const std::string_view text = fields_[j];
    switch (c.kind) {
      case ColumnKind::kLabel: {
        const float y = parse_float(column, text);
        if (!(y >= 0.0f && y <= 1.0f))
          fail("label range", column,
               fmt::format("{} is out of range: a label must be in [0, 1]", quote(text)));
        out.labels.push_back(y);
        has_label = true;
        break;
      }
      case ColumnKind::kDense: {
        float* row = out.dense.data() + dense_row + schema_.dense_offset(column);
        if (text.empty() && c.has_missing) {
          for (int64_t k = 0; k < c.dim; ++k) dense_value(column, row + k, c.missing);
          break;
        }
        if (text.empty() && c.dim == 1)
          fail("empty field", column,
               "the field is empty (set the column's 'missing' value to accept empty fields)");
        int64_t count = 0;
        if (!text.empty()) {
          for_each_token(text, f.id_separator, [&](std::string_view token) {
            if (count < c.dim) dense_value(column, row + count, parse_float(column, token));
            ++count;
          });
        }
        if (count != c.dim)
          fail("dense count", column,
               fmt::format("expected {} {}-separated values (dim), found {}", c.dim,
                           f.id_separator == ',' ? std::string("comma")
                                                 : separator_name(f.id_separator),
                           count));
        break;
      }
      case ColumnKind::kSparse:
      case ColumnKind::kSequence: {
        SparseColumn& col = out.sparse[static_cast<size_t>(schema_.sparse_slot(column))];
        parse_ids(column, text, col.keys);
        col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
        break;
      }
      case ColumnKind::kIgnore:
        break;
    }
  }
  field_ = -1;
  (void)has_label;  // every schema column is a field (or in the header): the label was read
}

void RecordParser::parse_pairs(std::string_view line, Batch& out) {
  const bool fm = schema_.format().kind == FormatKind::kLibfm;
  size_t pos = 0;
  auto next_token = [&](std::string_view& token) {
    while (pos < line.size() && is_space(line[pos])) ++pos;
    if (pos >= line.size()) return false;
    const size_t start = pos;
    while (pos < line.size() && !is_space(line[pos])) ++pos;
    token = line.substr(start, pos - start);
    return true;
  };
  const int64_t label_column = schema_.label_column();
  std::string_view token;
  if (!next_token(token))
    fail("bad number", label_column, "the record is empty: it needs at least a label");
  const std::string_view label = token;
  if (token.size() > 1 && token[0] == '+') token.remove_prefix(1);  // libsvm's "+1"
  float y = parse_float(label_column, token);
  if (y == -1.0f) y = 0.0f;  // libsvm's -1/+1 labels
  if (!(y >= 0.0f && y <= 1.0f))
    fail("label range", label_column,
         fmt::format("{} is out of range: a label must be in [0, 1] (or -1, read as 0)",
                     quote(label)));
  out.labels.push_back(y);

  const int64_t num_dense = schema_.num_dense();
  const size_t dense_row = out.dense.size();
  out.dense.resize(dense_row + static_cast<size_t>(num_dense));
  for (const int64_t column : feature_columns_) {
    const Column& c = schema_.columns()[column];
    if (c.kind != ColumnKind::kDense) continue;
    float* row = out.dense.data() + dense_row + schema_.dense_offset(column);
    std::fill(row, row + c.dim, c.has_missing ? c.missing : 0.0f);
  }
  std::vector<int64_t>& order = scratch_columns_;
  order.clear();
  while (next_token(token)) {
    // libsvm: "id:value"; libfm: "field:id:value".
    const size_t c1 = token.find(':');
    const size_t c2 = c1 == std::string_view::npos ? c1 : token.find(':', c1 + 1);
    const size_t last = token.rfind(':');
    const bool shape_ok = fm ? (c2 != std::string_view::npos && c2 == last)
                             : (c1 != std::string_view::npos && c1 == last);
    if (!shape_ok)
      throw Bad{"bad pair", fmt::format("{} is not {}", quote(token),
                                        fm ? "field:id:value" : "id:value")};
    int64_t column = feature_columns_.front();
    std::string_view id_text = token.substr(0, c1), value_text = token.substr(c1 + 1);
    if (fm) {
      const std::string_view field_text = token.substr(0, c1);
      uint64_t field = 0;
      const auto [ptr, ec] =
          std::from_chars(field_text.data(), field_text.data() + field_text.size(), field, 10);
      if (ec != std::errc() || ptr != field_text.data() + field_text.size() ||
          field >= feature_columns_.size())
        throw Bad{"index range",
                  fmt::format("{}: field {} is not a feature column: fields are 0..{} (the "
                              "schema's columns besides the label, in order)",
                              quote(token), quote(field_text), feature_columns_.size() - 1)};
      column = feature_columns_[field];
      id_text = token.substr(c1 + 1, c2 - c1 - 1);
      value_text = token.substr(c2 + 1);
    }
    const Column& c = schema_.columns()[column];
    if (c.kind == ColumnKind::kIgnore) continue;
    const float value = parse_float(column, value_text);
    if (c.kind == ColumnKind::kDense) {
      uint64_t index = 0;
      const auto [ptr, ec] =
          std::from_chars(id_text.data(), id_text.data() + id_text.size(), index, 10);
      if (ec != std::errc() || ptr != id_text.data() + id_text.size() ||
          index >= static_cast<uint64_t>(c.dim))
        fail("index range", column,
             fmt::format("{}: index {} is outside the dense column's [0, {})", quote(token),
                         quote(id_text), c.dim));
      out.dense[dense_row + static_cast<size_t>(schema_.dense_offset(column)) + index] = value;
      continue;
    }
    if (id_text.empty()) fail("bad id", column, fmt::format("{} has an empty id", quote(token)));
    const uint64_t id = parse_id(column, id_text);  // checked even when absent: "x:0" is bad
    if (value == 0.0f) continue;                    // an absent feature
    if (value != 1.0f)
      fail("non-binary value", column,
           fmt::format("{}: value {} — sparse columns take binary features (1, or 0 for absent)",
                       quote(token), quote(value_text)));
    order.push_back(column);
    scratch_ids_.push_back(id);
  }
  // Ids in record order, grouped by column (a stable pass per sparse slot).
  for (int64_t slot = 0; slot < schema_.num_sparse(); ++slot) {
    const int64_t column = schema_.sparse_columns()[slot];
    SparseColumn& col = out.sparse[static_cast<size_t>(slot)];
    for (size_t k = 0; k < order.size(); ++k)
      if (order[k] == column) col.keys.push_back(scratch_ids_[k]);
    col.offsets.push_back(static_cast<int64_t>(col.keys.size()));
  }
  scratch_ids_.clear();
  // Dense values a record did not mention get missing (or 0), clipped and transformed too.
  for (const int64_t column : feature_columns_) {
    const Column& c = schema_.columns()[column];
    if (c.kind != ColumnKind::kDense) continue;
    float* row = out.dense.data() + dense_row + schema_.dense_offset(column);
    for (int64_t k = 0; k < c.dim; ++k) dense_value(column, row + k, row[k]);
  }
}

bool RecordParser::parse(std::string_view line, Batch& out, uint64_t sample_id, BadRecord& bad) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t labels = out.labels.size(), dense = out.dense.size();
  sizes_.resize(out.sparse.size());
  for (size_t s = 0; s < out.sparse.size(); ++s)
    sizes_[s] = {out.sparse[s].keys.size(), out.sparse[s].offsets.size()};
  try {
    if (schema_.format().delimited()) parse_delimited(line, out);
    else parse_pairs(line, out);
  } catch (Bad& b) {
    field_ = -1;
    scratch_ids_.clear();
    out.labels.resize(labels);
    out.dense.resize(dense);
    for (size_t s = 0; s < out.sparse.size(); ++s) {
      out.sparse[s].keys.resize(sizes_[s].first);
      out.sparse[s].offsets.resize(sizes_[s].second);
    }
    bad.reason = b.reason;
    bad.message = std::move(b.message);
    return false;
  }
  // A sequence longer than max_len keeps its most recent (last) ids.
  for (int64_t slot = 0; slot < schema_.num_sparse(); ++slot) {
    const Column& c = schema_.columns()[schema_.sparse_columns()[slot]];
    if (c.kind != ColumnKind::kSequence) continue;
    SparseColumn& col = out.sparse[static_cast<size_t>(slot)];
    const size_t n = col.offsets.size();
    const int64_t first = col.offsets[n - 2], count = col.offsets[n - 1] - first;
    if (count <= c.max_len) continue;
    const auto drop = static_cast<std::ptrdiff_t>(count - c.max_len);
    col.keys.erase(col.keys.begin() + first, col.keys.begin() + first + drop);
    col.offsets[n - 1] -= drop;
  }
  out.sample_ids.push_back(sample_id);
  ++out.size;
  return true;
}

}  // namespace lockstep::data

#include "lockstep/data/schema.h"

#include <xxhash.h>

#include <toml++/toml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "io/toml_util.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"

namespace lockstep::data {

namespace {

constexpr ColumnKind kAllKinds[] = {ColumnKind::kLabel, ColumnKind::kDense, ColumnKind::kSparse,
                                    ColumnKind::kSequence, ColumnKind::kIgnore};

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Gives the "where: " prefix of an error about `field` of column `column` (0-based); an empty
// field means the column as a whole.
using Locator = std::function<std::string(int64_t column, std::string_view field)>;

// The first problem found, or nothing. Shared by the constructor (locations are column
// numbers) and the TOML loader (locations are file:line).
void validate_columns(const std::vector<Column>& columns, const Locator& where,
                      const std::string& whole) {
  LOCKSTEP_CHECK(!columns.empty(), "{}: the schema has no columns: it needs at least a label",
                 whole);
  std::unordered_map<std::string_view, int64_t> seen;
  int64_t label = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(columns.size()); ++i) {
    const Column& c = columns[i];
    LOCKSTEP_CHECK(valid_name(c.name),
                   "{}column {} field 'name' = '{}' is not a valid name: use one or more letters, "
                   "digits, '_', '.' or '-'",
                   where(i, "name"), i + 1, c.name);
    const auto [it, inserted] = seen.emplace(c.name, i);
    LOCKSTEP_CHECK(inserted,
                   "{}column '{}' is defined twice (columns {} and {}): names must be unique",
                   where(i, "name"), c.name, it->second + 1, i + 1);
    const std::string_view kind = to_string(c.kind);
    if (c.kind == ColumnKind::kDense) {
      LOCKSTEP_CHECK(c.dim >= 1 && c.dim <= kMaxDenseDim,
                     "{}column '{}' field 'dim' = {} is out of range: must be in [1, {}]",
                     where(i, "dim"), c.name, c.dim, kMaxDenseDim);
    } else {
      LOCKSTEP_CHECK(c.dim == 0,
                     "{}column '{}' field 'dim' applies only to kind 'dense' (this column is '{}')",
                     where(i, "dim"), c.name, kind);
    }
    if (c.kind == ColumnKind::kSequence) {
      LOCKSTEP_CHECK(c.max_len >= 1 && c.max_len <= kMaxSequenceLength,
                     "{}column '{}' field 'max_len' = {} is out of range: must be in [1, {}]",
                     where(i, "max_len"), c.name, c.max_len, kMaxSequenceLength);
    } else {
      LOCKSTEP_CHECK(
          c.max_len == 0,
          "{}column '{}' field 'max_len' applies only to kind 'sequence' (this column is '{}')",
          where(i, "max_len"), c.name, kind);
    }
    if (c.kind != ColumnKind::kDense) {
      const bool plain = !c.has_missing && c.transform == Transform::kNone &&
                         c.clip_min == -std::numeric_limits<float>::infinity() &&
                         c.clip_max == std::numeric_limits<float>::infinity();
      const char* field = c.has_missing ? "missing" : c.transform != Transform::kNone ? "transform"
                                                                                      : "clip";
      LOCKSTEP_CHECK(plain, "{}column '{}' field '{}' applies only to kind 'dense' (this column is "
                     "'{}')", where(i, field), c.name, field, kind);
    } else {
      LOCKSTEP_CHECK(!c.has_missing || std::isfinite(c.missing),
                     "{}column '{}' field 'missing' = {} must be a finite number", where(i, "missing"),
                     c.name, c.missing);
      LOCKSTEP_CHECK(!std::isnan(c.clip_min) && !std::isnan(c.clip_max) && c.clip_min <= c.clip_max,
                     "{}column '{}' field 'clip' = [{}, {}] is not a range: needs min <= max",
                     where(i, "clip"), c.name, c.clip_min, c.clip_max);
      LOCKSTEP_CHECK(c.transform != Transform::kLog1p || c.clip_min >= -1.0f,
                     "{}column '{}' field 'transform' = 'log1p' needs values > -1: set clip = [0, "
                     "...] (or another lower bound >= -1), here the lower bound is {}",
                     where(i, "transform"), c.name, c.clip_min);
    }
    LOCKSTEP_CHECK(!c.hash || c.kind == ColumnKind::kSparse || c.kind == ColumnKind::kSequence,
                   "{}column '{}' field 'hash' applies only to kinds 'sparse' and 'sequence' (this "
                   "column is '{}')",
                   where(i, "hash"), c.name, kind);
    if (c.kind == ColumnKind::kLabel) {
      LOCKSTEP_CHECK(label < 0,
                     "{}column '{}' field 'kind' = 'label' makes it a second label column (the "
                     "first is '{}'): a schema needs exactly one",
                     where(i, "kind"), c.name, label >= 0 ? columns[label].name : "");
      label = i;
    }
  }
  LOCKSTEP_CHECK(label >= 0, "{}: no column has kind 'label': a schema needs exactly one", whole);
}

bool bad_separator(char c) { return c == '\n' || c == '\r' || c == '"' || c == '\0'; }

// The format's own rules and those it puts on the columns.
void validate_format(const TextFormat& f, const std::vector<Column>& columns,
                     const std::function<std::string(std::string_view field)>& where) {
  LOCKSTEP_CHECK(!bad_separator(f.separator) && !bad_separator(f.id_separator),
                 "{}format field 'separator'/'id_separator' cannot be a newline, a quote or NUL",
                 where("separator"));
  if (f.delimited()) {
    LOCKSTEP_CHECK(f.separator != f.id_separator || f.quotes,
                   "{}format: separator and id_separator are both '{}': set quotes = true (fields "
                   "with several ids are then quoted) or choose another id_separator",
                   where("id_separator"), f.separator);
    return;
  }
  LOCKSTEP_CHECK(!f.header && !f.quotes, "{}format kind '{}' has no header line and no quotes",
                 where(f.header ? "header" : "quotes"), to_string(f.kind));
  int64_t features = 0;
  for (const Column& c : columns) features += c.kind != ColumnKind::kLabel;
  LOCKSTEP_CHECK(f.kind != FormatKind::kLibsvm || features == 1,
                 "{}format kind 'libsvm' feeds every id:value pair to one feature column, but the "
                 "schema has {} columns besides the label (use kind 'libfm' for fields)",
                 where("kind"), features);
}

std::string_view toml_type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

// A float as TOML reads it back exactly (shortest round-trip form; inf as TOML's inf).
std::string toml_float(float v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// A character inside a TOML basic string.
std::string toml_char(char c) {
  if (c == '\t') return "\\t";
  if (c == '\\') return "\\\\";
  if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
    return fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
  return std::string(1, c);
}

int64_t line_of(const toml::node& node) { return static_cast<int64_t>(node.source().begin.line); }

// Where each field of one [[column]] table was written.
struct ColumnLines {
  int64_t table = 0;
  std::unordered_map<std::string, int64_t> fields;
};

}  // namespace

std::string_view to_string(Transform transform) {
  return transform == Transform::kLog1p ? "log1p" : "none";
}

std::string_view to_string(FormatKind kind) {
  switch (kind) {
    case FormatKind::kTsv:
      return "tsv";
    case FormatKind::kCsv:
      return "csv";
    case FormatKind::kLibsvm:
      return "libsvm";
    case FormatKind::kLibfm:
      return "libfm";
  }
  return "?";
}

TextFormat TextFormat::of(FormatKind kind) {
  TextFormat f;
  f.kind = kind;
  if (kind == FormatKind::kCsv) {
    f.separator = ',';
    f.header = true;
    f.quotes = true;
  }
  return f;
}

std::string_view to_string(ColumnKind kind) {
  switch (kind) {
    case ColumnKind::kLabel:
      return "label";
    case ColumnKind::kDense:
      return "dense";
    case ColumnKind::kSparse:
      return "sparse";
    case ColumnKind::kSequence:
      return "sequence";
    case ColumnKind::kIgnore:
      return "ignore";
  }
  return "?";
}

uint64_t hash_token(std::string_view token, uint64_t seed) {
  return XXH64(token.data(), token.size(), seed);
}

uint64_t Column::hash_seed() const { return XXH64(name.data(), name.size(), 0); }

Column Column::label(std::string name) {
  return make(std::move(name), ColumnKind::kLabel, 0, 0, false);
}
Column Column::dense(std::string name, int64_t dim) {
  return make(std::move(name), ColumnKind::kDense, dim, 0, false);
}
Column Column::sparse(std::string name, bool hash) {
  return make(std::move(name), ColumnKind::kSparse, 0, 0, hash);
}
Column Column::sequence(std::string name, int64_t max_len, bool hash) {
  return make(std::move(name), ColumnKind::kSequence, 0, max_len, hash);
}
Column Column::ignore(std::string name) {
  return make(std::move(name), ColumnKind::kIgnore, 0, 0, false);
}

Column Column::make(std::string name, ColumnKind kind, int64_t dim, int64_t max_len, bool hash) {
  Column c;
  c.name = std::move(name);
  c.kind = kind;
  c.dim = dim;
  c.max_len = max_len;
  c.hash = hash;
  return c;
}

bool Column::operator==(const Column& other) const {
  return name == other.name && kind == other.kind && dim == other.dim && max_len == other.max_len &&
         hash == other.hash && has_missing == other.has_missing &&
         (!has_missing || missing == other.missing) && clip_min == other.clip_min &&
         clip_max == other.clip_max && transform == other.transform;
}

Schema::Schema(std::vector<Column> columns, TextFormat format)
    : columns_(std::move(columns)), format_(format) {
  validate_columns(
      columns_, [](int64_t, std::string_view) { return std::string("schema: "); }, "schema");
  validate_format(format_, columns_, [](std::string_view) { return std::string("schema: "); });
  slot_or_offset_.assign(columns_.size(), -1);
  for (int64_t i = 0; i < num_columns(); ++i) {
    const Column& c = columns_[i];
    switch (c.kind) {
      case ColumnKind::kLabel:
        label_column_ = i;
        break;
      case ColumnKind::kDense:
        slot_or_offset_[i] = num_dense_;
        num_dense_ += c.dim;
        break;
      case ColumnKind::kSparse:
      case ColumnKind::kSequence:
        slot_or_offset_[i] = static_cast<int64_t>(sparse_columns_.size());
        sparse_columns_.push_back(i);
        break;
      case ColumnKind::kIgnore:
        break;
    }
  }
}

int64_t Schema::sparse_slot(int64_t column) const {
  check_range("column", column, 0, num_columns() - 1);
  const ColumnKind kind = columns_[column].kind;
  return kind == ColumnKind::kSparse || kind == ColumnKind::kSequence ? slot_or_offset_[column]
                                                                      : -1;
}

int64_t Schema::dense_offset(int64_t column) const {
  check_range("column", column, 0, num_columns() - 1);
  return columns_[column].kind == ColumnKind::kDense ? slot_or_offset_[column] : -1;
}

int64_t Schema::find(std::string_view name) const {
  for (int64_t i = 0; i < num_columns(); ++i)
    if (columns_[i].name == name) return i;
  return -1;
}

Schema Schema::parse(std::string_view toml_text, std::string_view source) {
  const std::string src(source);
  toml::table root;
  try {
    root = toml::parse(toml_text, src);
  } catch (const toml::parse_error& e) {
    const auto line = static_cast<int64_t>(e.source().begin.line);
    const auto col = static_cast<int64_t>(e.source().begin.column);
    // Name the key the way the other messages do: "column 3 field 'kind'".
    const io::TomlKeyAt at = io::toml_key_at(toml_text, line);
    std::string key = at.dotted();
    if (at.table == "column" && at.index >= 0)
      key = at.key.empty() ? fmt::format("column {}", at.index + 1)
                           : fmt::format("column {} field '{}'", at.index + 1, at.key);
    if (key.empty())
      throw Error(fmt::format("{}:{}:{}: TOML syntax error: {}", src, line, col, e.description()));
    if (at.line == line)
      throw Error(fmt::format("{}:{}:{}: TOML syntax error at {}: {}", src, line, col, key,
                              e.description()));
    throw Error(
        fmt::format("{}:{}: TOML syntax error in the value of {} (at line {}, "
                    "column {}): {}",
                    src, at.line, key, line, col, e.description()));
  }

  std::vector<Column> columns;
  std::vector<ColumnLines> lines;
  for (const auto& [key, node] : root) {
    LOCKSTEP_CHECK(key.str() == "column" || key.str() == "format",
                   "{}:{}: unknown top-level key '{}': a schema holds [[column]] tables and an "
                   "optional [format] table",
                   src, line_of(node), key.str());
  }
  TextFormat format;
  std::unordered_map<std::string, int64_t> format_lines;
  if (const toml::node* f = root.get("format")) {
    LOCKSTEP_CHECK(f->is_table(), "{}:{}: 'format' must be a [format] table, not {}", src,
                   line_of(*f), toml_type_name(f->type()));
    const toml::table& t = *f->as_table();
    format_lines[""] = line_of(t);
    // The kind first: it sets the defaults the other fields override.
    if (const toml::node* k = t.get("kind")) {
      LOCKSTEP_CHECK(k->is_string(), "{}:{}: format field 'kind' must be a string, not {}", src,
                     line_of(*k), toml_type_name(k->type()));
      const std::string& name = k->as_string()->get();
      bool found = false;
      for (const FormatKind fk :
           {FormatKind::kTsv, FormatKind::kCsv, FormatKind::kLibsvm, FormatKind::kLibfm}) {
        if (name == to_string(fk)) {
          format = TextFormat::of(fk);
          found = true;
        }
      }
      LOCKSTEP_CHECK(found, "{}:{}: format field 'kind' = '{}' is not a format: use tsv, csv, "
                     "libsvm or libfm", src, line_of(*k), name);
    }
    for (const auto& [key, value] : t) {
      const toml::node& node = value;
      const std::string field(key.str());
      const int64_t line = line_of(node);
      format_lines[field] = line;
      auto one_char = [&]() {
        LOCKSTEP_CHECK(node.is_string() && node.as_string()->get().size() == 1,
                       "{}:{}: format field '{}' must be a one-character string (e.g. \"\\t\" or "
                       "\",\")", src, line, field);
        return node.as_string()->get()[0];
      };
      auto boolean = [&]() {
        LOCKSTEP_CHECK(node.is_boolean(), "{}:{}: format field '{}' must be a boolean, not {}", src,
                       line, field, toml_type_name(node.type()));
        return node.as_boolean()->get();
      };
      if (field == "kind") continue;
      if (field == "separator") format.separator = one_char();
      else if (field == "id_separator") format.id_separator = one_char();
      else if (field == "header") format.header = boolean();
      else if (field == "quotes") format.quotes = boolean();
      else
        throw Error(fmt::format("{}:{}: format has an unknown field '{}': the fields are kind, "
                                "separator, id_separator, header and quotes",
                                src, line, field));
    }
  }
  const toml::node* column_node = root.get("column");
  LOCKSTEP_CHECK(column_node != nullptr,
                 "{}: no [[column]] tables: a schema lists one [[column]] per record field", src);
  LOCKSTEP_CHECK(column_node->is_array_of_tables(),
                 "{}:{}: 'column' must be written as [[column]] tables, not {}", src,
                 line_of(*column_node), toml_type_name(column_node->type()));

  const toml::array& tables = *column_node->as_array();
  for (size_t i = 0; i < tables.size(); ++i) {
    const toml::table& t = *tables[i].as_table();
    ColumnLines where;
    where.table = line_of(t);
    Column c;
    std::string name_for_errors = fmt::format("{}", i + 1);
    bool has_kind = false, has_dim = false, has_max_len = false;
    // The name first, so every later message can use it.
    if (const toml::node* n = t.get("name")) {
      LOCKSTEP_CHECK(n->is_string(), "{}:{}: column {} field 'name' must be a string, not {}", src,
                     line_of(*n), i + 1, toml_type_name(n->type()));
      c.name = n->as_string()->get();
      name_for_errors = fmt::format("'{}'", c.name);
    } else {
      throw Error(fmt::format("{}:{}: column {} has no field 'name'", src, where.table, i + 1));
    }
    for (const auto& [key, value] : t) {
      const toml::node& node = value;  // a lambda below captures it (clang: no bindings there)
      const std::string field(key.str());
      const int64_t line = line_of(node);
      where.fields[field] = line;
      auto expect = [&](bool ok, std::string_view type) {
        LOCKSTEP_CHECK(ok, "{}:{}: column {} field '{}' must be {}, not {}", src, line,
                       name_for_errors, field, type, toml_type_name(node.type()));
      };
      if (field == "name") {
        continue;
      } else if (field == "kind") {
        expect(node.is_string(), "a string");
        const std::string& kind = node.as_string()->get();
        bool found = false;
        for (const ColumnKind k : kAllKinds) {
          if (kind == to_string(k)) {
            c.kind = k;
            found = true;
          }
        }
        LOCKSTEP_CHECK(found,
                       "{}:{}: column {} field 'kind' = '{}' is not a kind: use label, dense, "
                       "sparse, sequence or ignore",
                       src, line, name_for_errors, kind);
        has_kind = true;
      } else if (field == "dim") {
        expect(node.is_integer(), "an integer");
        c.dim = node.as_integer()->get();
        has_dim = true;
      } else if (field == "max_len") {
        expect(node.is_integer(), "an integer");
        c.max_len = node.as_integer()->get();
        has_max_len = true;
      } else if (field == "hash") {
        expect(node.is_boolean(), "a boolean (true or false)");
        c.hash = node.as_boolean()->get();
      } else if (field == "missing") {
        expect(node.is_number(), "a number");
        c.has_missing = true;
        c.missing = static_cast<float>(node.value<double>().value_or(0.0));
      } else if (field == "clip") {
        const toml::array* a = node.as_array();
        const bool two = a != nullptr && a->size() == 2 && (*a)[0].is_number() &&
                         (*a)[1].is_number();
        expect(two, "an array of two numbers [min, max]");
        c.clip_min = static_cast<float>((*a)[0].value<double>().value_or(0.0));
        c.clip_max = static_cast<float>((*a)[1].value<double>().value_or(0.0));
      } else if (field == "transform") {
        expect(node.is_string(), "a string");
        const std::string& t = node.as_string()->get();
        LOCKSTEP_CHECK(t == "none" || t == "log1p",
                       "{}:{}: column {} field 'transform' = '{}' is not a transform: use none or "
                       "log1p", src, line, name_for_errors, t);
        c.transform = t == "log1p" ? Transform::kLog1p : Transform::kNone;
      } else {
        throw Error(fmt::format(
            "{}:{}: column {} has an unknown field '{}': the fields are name, kind, dim, "
            "max_len, hash, missing, clip and transform",
            src, line, name_for_errors, field));
      }
    }
    LOCKSTEP_CHECK(has_kind,
                   "{}:{}: column {} has no field 'kind': use label, dense, sparse, sequence or "
                   "ignore",
                   src, where.table, name_for_errors);
    if (c.kind == ColumnKind::kDense && !has_dim) c.dim = 1;
    LOCKSTEP_CHECK(c.kind != ColumnKind::kSequence || has_max_len,
                   "{}:{}: column {} (kind 'sequence') has no field 'max_len': set how many of "
                   "the most recent ids to keep, in [1, {}]",
                   src, where.table, name_for_errors, kMaxSequenceLength);
    columns.push_back(std::move(c));
    lines.push_back(std::move(where));
  }

  validate_columns(
      columns,
      [&](int64_t column, std::string_view field) {
        const ColumnLines& l = lines[column];
        const auto it = l.fields.find(std::string(field));
        return fmt::format("{}:{}: ", src, it != l.fields.end() ? it->second : l.table);
      },
      src);
  validate_format(format, columns, [&](std::string_view field) {
    auto it = format_lines.find(std::string(field));
    if (it == format_lines.end()) it = format_lines.find("");
    return it == format_lines.end() ? src + ": " : fmt::format("{}:{}: ", src, it->second);
  });
  return Schema(std::move(columns), format);
}

Schema Schema::preset(std::string_view name) {
  if (name == "criteo") {
    std::vector<Column> columns{Column::label("label")};
    for (int i = 1; i <= 13; ++i) {
      Column c = Column::dense(fmt::format("I{}", i), 1);
      c.has_missing = true;
      c.missing = 0.0f;
      c.clip_min = 0.0f;
      c.transform = Transform::kLog1p;
      columns.push_back(c);
    }
    for (int i = 1; i <= 26; ++i) columns.push_back(Column::sparse(fmt::format("C{}", i), true));
    return Schema(std::move(columns));
  }
  throw Error(fmt::format("'{}' is not a schema preset: the presets are criteo", name));
}

Schema Schema::load_or_preset(const std::string& spec) {
  if (spec == "criteo") return preset(spec);
  return load(spec);
}

Schema Schema::load(const std::string& path) {
  std::error_code ec;
  LOCKSTEP_CHECK(!std::filesystem::is_directory(path, ec),
                 "cannot read schema file '{}': it is a directory", path);
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "cannot open schema file '{}': {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  LOCKSTEP_CHECK(!in.bad(), "cannot read schema file '{}'", path);
  return parse(text.str(), path);
}

std::string Schema::to_toml() const {
  std::string out =
      "# lockstep data schema: one [[column]] table per record field, in order.\n";
  if (format_ != TextFormat{}) {
    const TextFormat d = TextFormat::of(format_.kind);
    out += fmt::format("\n[format]\nkind = \"{}\"\n", to_string(format_.kind));
    if (format_.separator != d.separator)
      out += fmt::format("separator = \"{}\"\n", toml_char(format_.separator));
    if (format_.id_separator != d.id_separator)
      out += fmt::format("id_separator = \"{}\"\n", toml_char(format_.id_separator));
    if (format_.header != d.header) out += fmt::format("header = {}\n", format_.header);
    if (format_.quotes != d.quotes) out += fmt::format("quotes = {}\n", format_.quotes);
  }
  for (const Column& c : columns_) {
    out += fmt::format("\n[[column]]\nname = \"{}\"\nkind = \"{}\"\n", c.name, to_string(c.kind));
    if (c.kind == ColumnKind::kDense) out += fmt::format("dim = {}\n", c.dim);
    if (c.kind == ColumnKind::kSequence) out += fmt::format("max_len = {}\n", c.max_len);
    if (c.hash) out += "hash = true\n";
    if (c.has_missing) out += fmt::format("missing = {}\n", toml_float(c.missing));
    if (c.clip_min != -std::numeric_limits<float>::infinity() ||
        c.clip_max != std::numeric_limits<float>::infinity())
      out += fmt::format("clip = [{}, {}]\n", toml_float(c.clip_min), toml_float(c.clip_max));
    if (c.transform != Transform::kNone)
      out += fmt::format("transform = \"{}\"\n", to_string(c.transform));
  }
  return out;
}

void Schema::save(const std::string& path) const { write_file_atomically(path, to_toml()); }

Batch make_empty_batch(const Schema& schema) {
  Batch batch;
  batch.sparse.resize(static_cast<size_t>(schema.num_sparse()));
  return batch;
}

void check_batch(const Schema& schema, const Batch& batch, std::string_view what) {
  const int64_t n = batch.size;
  LOCKSTEP_CHECK(n >= 0, "{}: size = {} is negative", what, n);
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.labels.size()) == n,
                 "{}: labels has {} values for {} samples", what, batch.labels.size(), n);
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.sample_ids.size()) == n,
                 "{}: sample_ids has {} values for {} samples", what, batch.sample_ids.size(), n);
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.dense.size()) == n * schema.num_dense(),
                 "{}: dense has {} values; the schema needs {} samples x {} = {}", what,
                 batch.dense.size(), n, schema.num_dense(), n * schema.num_dense());
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.sparse.size()) == schema.num_sparse(),
                 "{}: {} sparse columns; the schema has {} sparse/sequence columns", what,
                 batch.sparse.size(), schema.num_sparse());
  for (int64_t s = 0; s < schema.num_sparse(); ++s) {
    const SparseColumn& col = batch.sparse[s];
    const std::string& name = schema.columns()[schema.sparse_columns()[s]].name;
    LOCKSTEP_CHECK(static_cast<int64_t>(col.offsets.size()) == n + 1,
                   "{}: column '{}' has {} offsets for {} samples (needs size + 1)", what, name,
                   col.offsets.size(), n);
    LOCKSTEP_CHECK(col.offsets[0] == 0, "{}: column '{}' offsets[0] = {} (must be 0)", what, name,
                   col.offsets[0]);
    for (int64_t b = 0; b < n; ++b) {
      LOCKSTEP_CHECK(col.offsets[b + 1] >= col.offsets[b],
                     "{}: column '{}' offsets decrease at sample {} ({} > {})", what, name, b,
                     col.offsets[b], col.offsets[b + 1]);
    }
    LOCKSTEP_CHECK(col.offsets[n] == static_cast<int64_t>(col.keys.size()),
                   "{}: column '{}' offsets end at {} but it has {} keys", what, name,
                   col.offsets[n], col.keys.size());
  }
  for (int64_t b = 0; b < n; ++b) {
    const float y = batch.labels[b];
    LOCKSTEP_CHECK(y >= 0.0f && y <= 1.0f, "{}: label of sample {} = {} is outside [0, 1]", what, b,
                   y);
  }
}

}  // namespace lockstep::data

#include "lockstep/data/schema.h"

#include <xxhash.h>

#include <toml++/toml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
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

int64_t line_of(const toml::node& node) { return static_cast<int64_t>(node.source().begin.line); }

// Where each field of one [[column]] table was written.
struct ColumnLines {
  int64_t table = 0;
  std::unordered_map<std::string, int64_t> fields;
};

}  // namespace

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
  return {std::move(name), ColumnKind::kLabel, 0, 0, false};
}
Column Column::dense(std::string name, int64_t dim) {
  return {std::move(name), ColumnKind::kDense, dim, 0, false};
}
Column Column::sparse(std::string name, bool hash) {
  return {std::move(name), ColumnKind::kSparse, 0, 0, hash};
}
Column Column::sequence(std::string name, int64_t max_len, bool hash) {
  return {std::move(name), ColumnKind::kSequence, 0, max_len, hash};
}
Column Column::ignore(std::string name) {
  return {std::move(name), ColumnKind::kIgnore, 0, 0, false};
}

bool Column::operator==(const Column& other) const {
  return name == other.name && kind == other.kind && dim == other.dim && max_len == other.max_len &&
         hash == other.hash;
}

Schema::Schema(std::vector<Column> columns) : columns_(std::move(columns)) {
  validate_columns(
      columns_, [](int64_t, std::string_view) { return std::string("schema: "); }, "schema");
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
    LOCKSTEP_CHECK(key.str() == "column",
                   "{}:{}: unknown top-level key '{}': a schema holds only [[column]] tables", src,
                   line_of(node), key.str());
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
      } else {
        throw Error(fmt::format(
            "{}:{}: column {} has an unknown field '{}': the fields are name, kind, dim, "
            "max_len and hash",
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
  return Schema(std::move(columns));
}

Schema Schema::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "cannot open schema file '{}': {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  LOCKSTEP_CHECK(!in.bad(), "cannot read schema file '{}'", path);
  return parse(text.str(), path);
}

std::string Schema::to_toml() const {
  std::string out =
      "# lockstep data schema: one [[column]] table per tab-separated record field, in order.\n";
  for (const Column& c : columns_) {
    out += fmt::format("\n[[column]]\nname = \"{}\"\nkind = \"{}\"\n", c.name, to_string(c.kind));
    if (c.kind == ColumnKind::kDense) out += fmt::format("dim = {}\n", c.dim);
    if (c.kind == ColumnKind::kSequence) out += fmt::format("max_len = {}\n", c.max_len);
    if (c.hash) out += "hash = true\n";
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

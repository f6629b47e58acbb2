#include "io/toml_util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "lockstep/core/error.h"

namespace lockstep::io {

namespace {
std::string dotted(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key);
}

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

/// Opening minus closing brackets and braces in `s`, outside strings and comments.
int nesting(std::string_view s) {
  int depth = 0;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quote) {
      if (c == '\\' && quote == '"')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      break;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return depth;
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  LOCKSTEP_CHECK(!std::filesystem::is_directory(path, ec),
                 "cannot read configuration file '{}': it is a directory", path);
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "cannot open configuration file '{}': {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  LOCKSTEP_CHECK(!in.bad(), "cannot read configuration file '{}'", path);
  return text.str();
}
}  // namespace

std::string TomlKeyAt::dotted() const {
  std::string out = table;
  if (index >= 0) out += fmt::format("[{}]", index);
  if (!key.empty()) out += out.empty() ? key : "." + key;
  return out;
}

TomlKeyAt toml_key_at(std::string_view text, int64_t line) {
  TomlKeyAt at;
  std::map<std::string, int64_t, std::less<>> arrays;  // [[name]] headers seen so far
  int depth = 0;  // brackets still open in a value that continues on the next line
  size_t pos = 0;
  for (int64_t n = 1; n <= line && pos <= text.size(); ++n) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    if (depth > 0) {  // a line of the value of at.key
      depth = std::max(0, depth + nesting(raw));
      continue;
    }
    const std::string_view l = trim(raw);
    if (l.empty() || l[0] == '#') continue;
    at.line = n;
    if (l[0] == '[') {
      const bool array = l.size() > 1 && l[1] == '[';
      std::string_view name = l.substr(array ? 2 : 1);
      name = trim(name.substr(0, name.find(']')));
      at.table = std::string(name);
      at.index = array ? arrays[at.table]++ : -1;
      at.key.clear();
      continue;
    }
    const size_t eq = l.find('=');
    std::string_view key =
        eq == std::string_view::npos ? std::string_view{} : trim(l.substr(0, eq));
    if (key.size() >= 2 && (key[0] == '"' || key[0] == '\'') && key.back() == key[0])
      key = key.substr(1, key.size() - 2);
    at.key = std::string(key);
    if (eq != std::string_view::npos) depth = std::max(0, nesting(l.substr(eq + 1)));
  }
  return at;
}

void TomlDoc::read_override_marks(std::string_view text) {
  int64_t line = 1;
  for (size_t at = 0; at <= text.size(); ++line) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view l = text.substr(at, end - at);
    at = end + 1;
    if (l.find("--set ") == std::string_view::npos) continue;
    for (const std::string_view mark : {kSetByMark, kAddedByMark}) {
      const size_t m = l.rfind(mark);
      if (m == std::string_view::npos) continue;
      set_by_[line] = std::string(trim(l.substr(m + mark.size())));
      if (mark == kAddedByMark) added_lines_.push_back(line);
      break;
    }
  }
}

namespace {
/// A TOML syntax error as Error "<source>:<line>:<column>: TOML syntax error at <key>: ...",
/// naming the key whose line it is on (or whose multi-line value it is in) when there is one.
[[noreturn]] void throw_syntax_error(const std::string& source, std::string_view text,
                                     const toml::parse_error& e) {
  const auto line = static_cast<int64_t>(e.source().begin.line);
  const auto column = static_cast<int64_t>(e.source().begin.column);
  const TomlKeyAt at = toml_key_at(text, line);
  const std::string key = at.dotted();
  if (key.empty())
    throw Error(
        fmt::format("{}:{}:{}: TOML syntax error: {}", source, line, column, e.description()));
  if (at.line == line)
    throw Error(fmt::format("{}:{}:{}: TOML syntax error at {}: {}", source, line, column, key,
                            e.description()));
  // The value of `key` spans lines and the parser noticed the error further down.
  throw Error(fmt::format("{}:{}: TOML syntax error in the value of {} (at line {}, column {}): {}",
                          source, at.line, key, line, column, e.description()));
}
}  // namespace

TomlDoc::TomlDoc(const std::string& path) : path_(path) {
  const std::string text = read_file(path);
  read_override_marks(text);
  try {
    root_ = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw_syntax_error(path, text, e);
  }
}

TomlDoc TomlDoc::from_text(std::string_view text, const std::string& source) {
  TomlDoc doc;
  doc.path_ = source;
  doc.read_override_marks(text);
  try {
    doc.root_ = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw_syntax_error(source, text, e);
  }
  return doc;
}

std::string TomlDoc::where(const toml::node& node) const {
  const auto& src = node.source();
  if (&node == &root_ || src.begin.line == 0) return path_;
  const auto line = static_cast<int64_t>(src.begin.line);
  if (const auto it = set_by_.find(line); it != set_by_.end()) return "--set " + it->second;
  // Lines apply_overrides inserted above this one do not count: name the line as written.
  const auto shift = std::lower_bound(added_lines_.begin(), added_lines_.end(), line) -
                     added_lines_.begin();
  return fmt::format("{}:{}", path_, line - shift);
}

const toml::node& TomlDoc::locate(std::string_view key) const {
  const toml::node* found = &root_;  // the innermost node on the path that has a position
  const toml::node* node = &root_;
  while (!key.empty() && node) {
    // The next segment: a name, then any number of [index].
    const size_t end = std::min(key.find('.'), key.size());
    std::string_view segment = key.substr(0, end);
    key = end < key.size() ? key.substr(end + 1) : std::string_view{};
    const size_t bracket = std::min(segment.find('['), segment.size());
    const toml::table* table = node->as_table();
    node = table ? table->get(segment.substr(0, bracket)) : nullptr;
    if (node && node->source().begin.line > 0) found = node;
    for (std::string_view rest = segment.substr(bracket);
         node && rest.size() > 2 && rest[0] == '[';) {
      const size_t close = rest.find(']');
      if (close == std::string_view::npos) break;
      size_t index = 0;
      for (const char c : rest.substr(1, close - 1))
        index = index * 10 + static_cast<size_t>(c - '0');
      const toml::array* array = node->as_array();
      node = array && index < array->size() ? array->get(index) : nullptr;
      if (node && node->source().begin.line > 0) found = node;
      rest = rest.substr(close + 1);
    }
  }
  return *found;
}

void TomlDoc::fail(const toml::node& node, const std::string& message) const {
  throw Error(fmt::format("{}: {}", where(node), message));
}

int64_t TomlDoc::get_int(const toml::table& table, std::string_view prefix, std::string_view key,
                         int64_t def, int64_t lo, int64_t hi) const {
  const toml::node* node = table.get(key);
  if (!node) return def;
  // The type first: value<int64_t>() would also convert a float, which is undefined behaviour
  // outside the int64 range (e.g. rows = 1e75).
  if (!node->is_integer())
    fail(*node, fmt::format("{} must be an integer in [{}, {}]", dotted(prefix, key), lo, hi));
  const int64_t v = node->as_integer()->get();
  at(*node, [&] { check_range(dotted(prefix, key), v, lo, hi); });
  return v;
}

double TomlDoc::get_float(const toml::table& table, std::string_view prefix, std::string_view key,
                          double def, double lo, double hi) const {
  const toml::node* node = table.get(key);
  if (!node) return def;
  const auto v = node->value<double>();  // integers convert
  if (!v) fail(*node, fmt::format("{} must be a number in [{}, {}]", dotted(prefix, key), lo, hi));
  at(*node, [&] { check_range(dotted(prefix, key), *v, lo, hi); });
  return *v;
}

bool TomlDoc::get_bool(const toml::table& table, std::string_view prefix, std::string_view key,
                       bool def) const {
  const toml::node* node = table.get(key);
  if (!node) return def;
  if (!node->is_boolean())
    fail(*node, fmt::format("{} must be true or false", dotted(prefix, key)));
  return *node->value<bool>();
}

std::string TomlDoc::get_string(const toml::table& table, std::string_view prefix,
                                std::string_view key, const std::string& def) const {
  const toml::node* node = table.get(key);
  if (!node) return def;
  if (!node->is_string()) fail(*node, fmt::format("{} must be a string", dotted(prefix, key)));
  return *node->value<std::string>();
}

std::vector<int64_t> TomlDoc::get_int_array(const toml::table& table, std::string_view prefix,
                                            std::string_view key, const std::vector<int64_t>& def,
                                            int64_t lo, int64_t hi) const {
  const toml::node* node = table.get(key);
  if (!node) return def;
  const toml::array* arr = node->as_array();
  if (!arr) fail(*node, fmt::format("{} must be an array of integers", dotted(prefix, key)));
  std::vector<int64_t> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string name = fmt::format("{}[{}]", dotted(prefix, key), i);
    if (!el.is_integer()) fail(el, fmt::format("{} must be an integer", name));
    const int64_t v = el.as_integer()->get();
    at(el, [&] { check_range(name, v, lo, hi); });
    out.push_back(v);
  }
  return out;
}

const toml::table* TomlDoc::get_table(const toml::table& table, std::string_view prefix,
                                      std::string_view key) const {
  const toml::node* node = table.get(key);
  if (!node) return nullptr;
  if (!node->is_table()) fail(*node, fmt::format("{} must be a table", dotted(prefix, key)));
  return node->as_table();
}

std::vector<const toml::table*> TomlDoc::get_table_array(const toml::table& table,
                                                         std::string_view prefix,
                                                         std::string_view key) const {
  const toml::node* node = table.get(key);
  if (!node) return {};
  const toml::array* arr = node->as_array();
  if (!arr || !arr->is_array_of_tables())
    fail(*node, fmt::format("{} must be an array of tables ([[{}]])", dotted(prefix, key),
                            dotted(prefix, key)));
  std::vector<const toml::table*> out;
  for (const auto& el : *arr) out.push_back(el.as_table());
  return out;
}

void TomlDoc::check_keys(const toml::table& table, std::string_view prefix,
                         std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, node] : table) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
    fail(node, fmt::format("unknown key {} (allowed here: {})", dotted(prefix, key.str()),
                           fmt::join(allowed, ", ")));
  }
}

}  // namespace lockstep::io

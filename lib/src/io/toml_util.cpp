#include "io/toml_util.h"

#include <algorithm>

#include "lockstep/core/error.h"

namespace lockstep::io {

namespace {
std::string dotted(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key);
}
}  // namespace

TomlDoc::TomlDoc(const std::string& path) : path_(path) {
  try {
    root_ = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (!src.path)  // toml++ reports unreadable files as parse errors without a position
      throw Error(fmt::format("{}: {}", path, e.description()));
    throw Error(
        fmt::format("{}:{}:{}: {}", path, src.begin.line, src.begin.column, e.description()));
  }
}

TomlDoc TomlDoc::from_text(std::string_view text, const std::string& source) {
  TomlDoc doc;
  doc.path_ = source;
  try {
    doc.root_ = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw Error(
        fmt::format("{}:{}:{}: {}", source, src.begin.line, src.begin.column, e.description()));
  }
  return doc;
}

std::string TomlDoc::where(const toml::node& node) const {
  const auto& src = node.source();
  if (src.begin.line == 0) return path_;
  return fmt::format("{}:{}", path_, src.begin.line);
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

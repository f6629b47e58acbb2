// `--set key=value`: overriding keys of a model configuration's TOML text (models::apply_overrides,
// docs/configuration.md). The text is edited, not re-written: every line the user wrote keeps its
// content and comments, a replaced value stays on its line, and inserted lines are marked, so that
// errors name the file line as written, or the --set argument (io::TomlDoc::where()).
#include <algorithm>
#include <sstream>

#include "io/toml_util.h"
#include "lockstep/models/factory.h"

namespace lockstep::models {

namespace {

/// One step of a dotted key: a name and the [index]es after it ("tables[0]" -> tables, {0}).
struct KeyStep {
  std::string name;
  std::vector<size_t> indexes;
};

bool bare_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::vector<KeyStep> parse_key(std::string_view key, const std::string& arg) {
  std::vector<KeyStep> steps;
  const auto bad = [&](const std::string& why) {
    throw Error(fmt::format("--set {}: '{}' is not a key: {} (write dotted names, e.g. "
                            "model.mlp.widths or model.tables[0].rows)",
                            arg, key, why));
  };
  size_t i = 0;
  while (true) {
    KeyStep step;
    while (i < key.size() && bare_key_char(key[i])) step.name += key[i++];
    if (step.name.empty()) bad("a name is empty");
    while (i < key.size() && key[i] == '[') {
      const size_t close = key.find(']', i);
      if (close == std::string_view::npos || close == i + 1) bad("an index is not closed");
      size_t index = 0;
      for (size_t j = i + 1; j < close; ++j) {
        if (key[j] < '0' || key[j] > '9') bad("an index is not a number");
        index = index * 10 + static_cast<size_t>(key[j] - '0');
        if (index > (size_t{1} << 30)) bad("an index is too large");
      }
      step.indexes.push_back(index);
      i = close + 1;
    }
    steps.push_back(step);
    if (i == key.size()) break;
    if (key[i] != '.') bad(fmt::format("'{}' may not appear in a name", key[i]));
    ++i;
  }
  return steps;
}

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

/// The TOML text of the value of `arg` (key=value): as written when it parses as a TOML value,
/// else, for a bare word such as din or adam, that word as a string.
std::string value_text(std::string_view value, const std::string& arg) {
  if (value.find('\n') != std::string_view::npos)
    throw Error(fmt::format("--set {}: the value spans lines: write it on one", arg));
  try {
    (void)toml::parse(fmt::format("v = {}", value));
    return std::string(value);
  } catch (const toml::parse_error& e) {
    const bool word = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
      return bare_key_char(c) || c == '.' || c == '/' || c == ':';
    });
    if (word) {
      std::ostringstream os;
      os << toml::toml_formatter{toml::value<std::string>(std::string(value))};
      return os.str();
    }
    throw Error(fmt::format("--set {}: '{}' is not a TOML value ({}): write a number, true or "
                            "false, a \"string\" or an array such as [64, 1]",
                            arg, value, e.description()));
  }
}

/// Byte offset of (line, column), both 1-based, in `text`.
size_t offset_of(std::string_view text, size_t line, size_t column) {
  size_t at = 0;
  for (size_t l = 1; l < line && at < text.size(); ++l) {
    const size_t nl = text.find('\n', at);
    at = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return std::min(at + column - 1, text.size());
}

/// Offset just past the end of line `line` (1-based), before its '\n' (or "\r\n").
size_t end_of_line(std::string_view text, size_t line) {
  const size_t at = offset_of(text, line, 1);
  size_t end = std::min(text.find('\n', at), text.size());
  if (end > at && end < text.size() && text[end - 1] == '\r') --end;
  return end;
}

std::string_view line_text(std::string_view text, size_t line) {
  const size_t at = offset_of(text, line, 1);
  return text.substr(at, end_of_line(text, line) - at);
}

std::string join_key(const std::vector<KeyStep>& steps, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (!out.empty()) out += '.';
    out += steps[i].name;
  }
  return out;
}

/// `text` with one override applied.
std::string apply_one(const std::string& text, const std::string& arg, const std::string& source) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos)
    throw Error(fmt::format("--set {}: expected key=value, e.g. --set optimizer.lr=0.01", arg));
  if (arg.find('\n') != std::string::npos)
    throw Error(fmt::format("--set {}: the argument spans lines: write it on one", arg));
  const std::string_view key = trim(std::string_view(arg).substr(0, eq));
  const std::string value = value_text(trim(std::string_view(arg).substr(eq + 1)), arg);
  const auto steps = parse_key(key, arg);

  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}:{}: {}", source, e.source().begin.line,
                            e.source().begin.column, e.description()));
  }
  // Walk to the deepest table that exists on the key's path.
  toml::table* table = &root;
  std::string walked;  // the dotted path of `table`, for messages
  size_t i = 0;
  for (; i < steps.size(); ++i) {
    toml::node* node = table->get(steps[i].name);
    if (!node) break;
    std::string here = walked.empty() ? steps[i].name : walked + "." + steps[i].name;
    for (const size_t index : steps[i].indexes) {
      toml::array* array = node->as_array();
      if (!array)
        throw Error(fmt::format("--set {}: {} is not an array, so it has no [{}]", arg, here, index));
      if (index >= array->size())
        throw Error(fmt::format("--set {}: {} has {} entries, so it has no [{}]", arg, here,
                                array->size(), index));
      node = array->get(index);
      here += fmt::format("[{}]", index);
    }
    if (i + 1 == steps.size()) {
      // The key exists: replace its value where it is written.
      const auto& src = node->source();
      if (src.begin.line == 0 || !(node->is_value() || node->is_array() ||
                                   (node->is_table() && node->as_table()->is_inline())))
        throw Error(fmt::format("--set {}: {} is a table: set one of its keys ({}.<key>=...)", arg,
                                here, here));
      const size_t b = offset_of(text, src.begin.line, src.begin.column);
      const size_t e = offset_of(text, src.end.line, src.end.column);
      const size_t spanned = src.end.line - src.begin.line;  // keep the line count
      return text.substr(0, b) + value + text.substr(e, end_of_line(text, src.end.line) - e) +
             "  " + std::string(io::kSetByMark) + arg + std::string(spanned, '\n') +
             text.substr(end_of_line(text, src.end.line));
    }
    if (!node->is_table())
      throw Error(fmt::format("--set {}: {} is not a table, so it has no key {}", arg, here,
                              steps[i + 1].name));
    table = node->as_table();
    walked = here;
  }
  for (size_t j = i; j < steps.size(); ++j)
    if (!steps[j].indexes.empty())
      throw Error(fmt::format("--set {}: {} does not exist, so it has no [{}]", arg,
                              join_key(steps, 0, j + 1), steps[j].indexes[0]));
  const std::string rest = join_key(steps, i, steps.size());
  const std::string line = fmt::format("{} = {}  {}{}", rest, value, io::kAddedByMark, arg);
  const auto& src = table->source();
  if (table == &root && i + 1 == steps.size())  // the root's keys come before any header
    return line + "\n" + text;
  if (table->is_inline()) {
    // One line: `name = { ... }`; write the table out again with the new key.
    toml::table copy = *table;
    toml::table* t = &copy;
    for (size_t j = i; j + 1 < steps.size(); ++j)
      t = t->insert_or_assign(steps[j].name, toml::table{}).first->second.as_table();
    const toml::table parsed = toml::parse(fmt::format("v = {}", value));
    t->insert_or_assign(steps.back().name, *parsed.get("v"));
    std::ostringstream os;
    os << toml::toml_formatter{copy};
    std::string inline_text = os.str();
    const size_t b = offset_of(text, src.begin.line, src.begin.column);
    const size_t e = offset_of(text, src.end.line, src.end.column);
    return text.substr(0, b) + inline_text +
           text.substr(e, end_of_line(text, src.end.line) - e) + "  " +
           std::string(io::kSetByMark) + arg + std::string(src.end.line - src.begin.line, '\n') +
           text.substr(end_of_line(text, src.end.line));
  }
  const bool header =
      src.begin.line > 0 && trim(line_text(text, src.begin.line)).substr(0, 1) == "[";
  const bool indexed = walked.find('[') != std::string::npos;
  if (header && (i + 1 == steps.size() || indexed)) {
    // Right after the table's [header] / [[header]] line (a dotted key for new sub-tables).
    const size_t at = end_of_line(text, src.begin.line);
    return text.substr(0, at) + "\n" + line + text.substr(at);
  }
  // New tables, or a table only implied by its sub-tables: a [header] of its own at the end.
  const std::string table_key =
      walked.empty() ? join_key(steps, i, steps.size() - 1)
                     : (i + 1 == steps.size() ? walked
                                              : walked + "." + join_key(steps, i, steps.size() - 1));
  std::string out = text;
  if (!out.empty() && out.back() != '\n') out += '\n';
  return out + fmt::format("[{}]  {}{}\n{} = {}  {}{}\n", table_key, io::kAddedByMark, arg,
                           steps.back().name, value, io::kAddedByMark, arg);
}

}  // namespace

std::string apply_overrides(std::string_view toml_text, const std::vector<std::string>& overrides,
                            const std::string& source) {
  std::string text(toml_text);
  for (const auto& arg : overrides) {
    text = apply_one(text, arg, source);
    try {  // the edit must leave valid TOML (a table defined by dotted keys cannot be reopened)
      (void)toml::parse(text, source);
    } catch (const toml::parse_error& e) {
      throw Error(fmt::format("--set {}: cannot be applied to {}: {}", arg, source,
                              e.description()));
    }
  }
  return text;
}

}  // namespace lockstep::models

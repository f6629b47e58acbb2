#pragma once
// Internal: reading TOML configuration with errors that name the file, line and key.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "lockstep/core/error.h"

namespace lockstep::io {

/// The key a line of a TOML text belongs to, found by reading the text line by line (no full
/// parse, so it works on text that does not parse): the last table header at or before the
/// line, and the key of the key/value pair on it, or of the pair whose value (an array or
/// inline table written over several lines) reaches it.
struct TomlKeyAt {
  std::string table;   // "model.mlp", "model.tables", "column"; empty: the root
  int64_t index = -1;  // which [[table]] of its array (0-based); -1: a plain [table]
  std::string key;     // empty: the line is the header itself (or not a key/value pair)
  int64_t line = 0;    // where that key (or header) is written; 0: nothing before the line
  /// "model.tables[1].rows", "model.mlp", "seed"; empty when nothing was found.
  std::string dotted() const;
};
TomlKeyAt toml_key_at(std::string_view text, int64_t line);

/// A parsed TOML file. Parse errors throw Error("<path>:<line>:<col>: TOML syntax error at
/// <dotted key>: <reason>").
class TomlDoc {
 public:
  explicit TomlDoc(const std::string& path);
  /// TOML text already in memory; `source` stands for the path in every message.
  static TomlDoc from_text(std::string_view text, const std::string& source);
  const toml::table& root() const { return root_; }
  const std::string& path() const { return path_; }
  /// "<path>:<line>" of a node (just the path for the root, or a node without a position).
  std::string where(const toml::node& node) const;
  /// The node a dotted key names ("model.fields[3].table", as in ConfigError::key()), or, when
  /// it is not written in the file, the innermost table or array on its path that is (a missing
  /// key: its table); the root when none is.
  const toml::node& locate(std::string_view key) const;

  // Typed, range-checked reads of `table[key]`; `prefix` is the dotted path of `table` used in
  // messages ("model.mlp"). A missing key gives the default; a wrong type or a value out of
  // [lo, hi] throws Error naming file:line, "<prefix>.<key>", the value and the allowed range.
  int64_t get_int(const toml::table& table, std::string_view prefix, std::string_view key,
                  int64_t def, int64_t lo, int64_t hi) const;
  double get_float(const toml::table& table, std::string_view prefix, std::string_view key,
                   double def, double lo, double hi) const;
  bool get_bool(const toml::table& table, std::string_view prefix, std::string_view key,
                bool def) const;
  std::string get_string(const toml::table& table, std::string_view prefix, std::string_view key,
                         const std::string& def) const;
  std::vector<int64_t> get_int_array(const toml::table& table, std::string_view prefix,
                                     std::string_view key, const std::vector<int64_t>& def,
                                     int64_t lo, int64_t hi) const;
  /// The sub-table at key (nullptr when absent); Error when the key holds something else.
  const toml::table* get_table(const toml::table& table, std::string_view prefix,
                               std::string_view key) const;
  /// The array of tables at key ([[key]]); empty when absent.
  std::vector<const toml::table*> get_table_array(const toml::table& table, std::string_view prefix,
                                                  std::string_view key) const;
  /// Throws Error for any key of `table` not in `allowed` (catches typos like "wdiths").
  void check_keys(const toml::table& table, std::string_view prefix,
                  std::initializer_list<std::string_view> allowed) const;
  /// Runs `f`; a lockstep::Error it throws is rethrown prefixed with where(node).
  template <class F>
  auto at(const toml::node& node, F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const Error& e) {
      fail(node, e.what());
    }
  }
  /// Runs `f`, which checks values read from this file (a Config::validate(), a model
  /// constructor): a ConfigError it throws is rethrown at where(locate(key())), any other Error
  /// that does not yet name this file prefixed with the path.
  template <class F>
  auto located(F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const ConfigError& e) {
      fail(locate(e.key()), e.what());
    } catch (const Error& e) {
      const std::string_view what(e.what());
      if (what.substr(0, path_.size() + 1) == path_ + ":" || what.substr(0, 6) == "--set ") throw;
      throw Error(fmt::format("{}: {}", path_, e.what()));
    }
  }
  /// Throws Error("<where(node)>: <message>").
  [[noreturn]] void fail(const toml::node& node, const std::string& message) const;

 private:
  TomlDoc() = default;
  /// Reads the marks models::apply_overrides leaves in the text (see kSetByMark).
  void read_override_marks(std::string_view text);
  std::string path_;
  toml::table root_;
  std::map<int64_t, std::string> set_by_;  // line -> the --set argument that wrote it
  std::vector<int64_t> added_lines_;       // lines apply_overrides inserted (sorted)
};

/// The comments models::apply_overrides appends to the lines it writes: "<value>  # set by
/// --set <arg>" where it replaced a value, "<key> = <value>  # added by --set <arg>" on a line it
/// inserted. TomlDoc::where() names the --set argument for a node on such a line, and the line
/// of the text before the insertions for any other node, so that errors name what the user
/// wrote.
inline constexpr std::string_view kSetByMark = "# set by --set ";
inline constexpr std::string_view kAddedByMark = "# added by --set ";

}  // namespace lockstep::io

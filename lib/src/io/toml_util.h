#pragma once
// Internal: reading TOML configuration with errors that name the file, line and key.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "lockstep/core/error.h"

namespace lockstep::io {

/// A parsed TOML file. Parse errors throw Error("<path>:<line>:<col>: <reason>").
class TomlDoc {
 public:
  explicit TomlDoc(const std::string& path);
  /// TOML text already in memory; `source` stands for the path in every message.
  static TomlDoc from_text(std::string_view text, const std::string& source);
  const toml::table& root() const { return root_; }
  const std::string& path() const { return path_; }
  /// "<path>:<line>" of a node (or just the path when the node has no source position).
  std::string where(const toml::node& node) const;

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
  /// Throws Error("<where(node)>: <message>").
  [[noreturn]] void fail(const toml::node& node, const std::string& message) const;

 private:
  TomlDoc() = default;
  std::string path_;
  toml::table root_;
};

}  // namespace lockstep::io

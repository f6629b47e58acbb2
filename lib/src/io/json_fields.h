#pragma once
// Internal: strict reading of the JSON that lockstep reads back (checkpoint and student-bundle
// manifests, safetensors headers). Any input bytes give lockstep::Error naming the file and, past
// the syntax, the field: never another exception type, never a silently different value.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::io {

/// Parses `text` as JSON. Throws Error "<path>: not valid JSON: ..." for a syntax error (also
/// invalid UTF-8, a NUL byte, a number out of double's range), a key repeated within one object,
/// or nesting deeper than 64 levels (lockstep's formats need 4).
nlohmann::json parse_json(std::string_view text, const std::string& path);

/// `s` in quotes for a message: at most `max` bytes, bytes outside printable ASCII as \xNN.
std::string quote_text(std::string_view s, size_t max = 40, char quote = '"');

/// Exactly 16 hex digits (either case) into *value; false for anything else.
bool parse_hex64(std::string_view s, uint64_t* value);

/// Reads the members of one JSON object, by key. Every accessor throws Error
/// "<path>: field '<name>' is missing", "... must be <type>, got <value>" or
/// "... = <value> is out of range: must be in [lo, hi]", where <name> is the key under `prefix`
/// ("tables[2].rows"). Keeps a pointer to the object: it must outlive the reader.
class JsonFields {
 public:
  /// Throws "<path>: field '<prefix>' must be an object" (or "<path>: must be a JSON object"
  /// without a prefix) when `object` is something else.
  JsonFields(const nlohmann::json& object, std::string path, std::string prefix = "");

  std::string string(const std::string& key);
  /// A string that is not empty.
  std::string name(const std::string& key);
  int64_t integer(const std::string& key, int64_t lo, int64_t hi);
  uint64_t unsigned_integer(const std::string& key);
  /// A number stored as float, in [lo, hi] (bounds rounded to float first, like check_range).
  float real(const std::string& key, double lo, double hi);
  bool boolean(const std::string& key);
  /// Exactly 16 hex digits.
  uint64_t hex64(const std::string& key);
  std::vector<std::string> strings(const std::string& key);
  std::vector<int64_t> integers(const std::string& key, int64_t lo, int64_t hi);
  /// A member object, read the same way, named "<key>" under this prefix.
  JsonFields object(const std::string& key);
  /// The elements of a member array of objects, named "<key>[i]".
  std::vector<JsonFields> objects(const std::string& key);

  bool has(const std::string& key) const { return object_->contains(key); }
  /// Every key of the object, in order.
  std::vector<std::string> keys() const;
  /// Throws "<path>: field '<name>' is not known ..." for a member no accessor has read.
  void reject_unknown() const;

  /// "<prefix>.<key>" (or "<key>"): the field's name in messages.
  std::string field(const std::string& key) const;
  const std::string& path() const { return path_; }

 private:
  const nlohmann::json& get(const std::string& key);
  const nlohmann::json* object_;
  std::string path_, prefix_;
  std::set<std::string> read_;
};

}  // namespace lockstep::io

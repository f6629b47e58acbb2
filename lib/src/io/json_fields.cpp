#include "io/json_fields.h"

#include <cfloat>
#include <cmath>

#include "lockstep/core/error.h"

namespace lockstep::io {

using nlohmann::json;

namespace {
constexpr int kMaxDepth = 64;

/// A value for a message. Arrays and objects are not dumped: dump() recurses, and a hostile file
/// may nest deeply (parse_json bounds the depth, but messages need not depend on that).
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return quote_text(v.get_ref<const std::string&>());
    case json::value_t::array:
      return fmt::format("an array of {} elements", v.size());
    case json::value_t::object:
      return "an object";
    default:
      return v.dump();
  }
}

/// At most `max` bytes of `s`, with bytes outside printable ASCII and those in `escape` as \xNN.
std::string printable(std::string_view s, size_t max, std::string_view escape) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && escape.find(static_cast<char>(c)) == std::string_view::npos)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return s.size() > max ? out + "..." : out;
}

[[noreturn]] void type_error(const std::string& path, const std::string& name, const char* type,
                             const json& got) {
  throw Error(fmt::format("{}: field '{}' must be {}, got {}", path, name, type, describe(got)));
}

int64_t as_integer(const json& v, const std::string& path, const std::string& name, int64_t lo,
                   int64_t hi) {
  if (!v.is_number_integer()) type_error(path, name, "an integer", v);
  const std::string field = fmt::format("{}: field '{}'", path, name);
  LOCKSTEP_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{INT64_MAX},
                 "{} = {} is out of range: must be in [{}, {}]", field, v.dump(), lo, hi);
  const int64_t value = v.get<int64_t>();
  check_range(field, value, lo, hi);
  return value;
}

const std::string& as_string(const json& v, const std::string& path, const std::string& name) {
  if (!v.is_string()) type_error(path, name, "a string", v);
  return v.get_ref<const std::string&>();
}
}  // namespace

json parse_json(std::string_view text, const std::string& path) {
  // Repeated keys: nlohmann keeps the last one silently; a manifest must say one thing once.
  std::vector<std::set<std::string>> keys;  // of the objects being parsed, outermost first
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    LOCKSTEP_CHECK(depth <= kMaxDepth, "{}: not valid JSON: nested deeper than {} levels", path,
                   kMaxDepth);
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second)
      throw Error(fmt::format("{}: not valid JSON: key {} appears twice in one object", path,
                              quote_text(parsed.get<std::string>())));
    return true;
  };
  // nlohmann stops at a NUL byte as at the end of the input: what follows would be ignored.
  const size_t nul = text.find('\0');
  LOCKSTEP_CHECK(nul == std::string_view::npos, "{}: not valid JSON: a NUL byte at offset {}", path,
                 nul);
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    // nlohmann quotes the offending input: keep the message printable.
    throw Error(fmt::format("{}: not valid JSON: {}", path, printable(e.what(), 300, "")));
  }
}

std::string quote_text(std::string_view s, size_t max, char quote) {
  const char escape[] = {quote, '\\', '\0'};
  return quote + printable(s.substr(0, max), max, escape) + quote + (s.size() > max ? "..." : "");
}

bool parse_hex64(std::string_view s, uint64_t* value) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if (c >= 'a' && c <= 'f')
      digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      digit = c - 'A' + 10;
    else
      return false;
    v = v << 4 | static_cast<uint64_t>(digit);
  }
  *value = v;
  return true;
}

JsonFields::JsonFields(const json& object, std::string path, std::string prefix)
    : object_(&object), path_(std::move(path)), prefix_(std::move(prefix)) {
  if (object.is_object()) return;
  if (prefix_.empty())
    throw Error(fmt::format("{}: must be a JSON object, got {}", path_, describe(object)));
  type_error(path_, prefix_, "an object", object);
}

std::string JsonFields::field(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

const json& JsonFields::get(const std::string& key) {
  const auto it = object_->find(key);
  LOCKSTEP_CHECK(it != object_->end(), "{}: field '{}' is missing", path_, field(key));
  read_.insert(key);
  return *it;
}

std::string JsonFields::string(const std::string& key) {
  return as_string(get(key), path_, field(key));
}

std::string JsonFields::name(const std::string& key) {
  std::string s = string(key);
  LOCKSTEP_CHECK(!s.empty(), "{}: field '{}' is empty", path_, field(key));
  return s;
}

int64_t JsonFields::integer(const std::string& key, int64_t lo, int64_t hi) {
  return as_integer(get(key), path_, field(key), lo, hi);
}

uint64_t JsonFields::unsigned_integer(const std::string& key) {
  const json& v = get(key);
  if (!v.is_number_integer()) type_error(path_, field(key), "an integer", v);
  LOCKSTEP_CHECK(v.is_number_unsigned(), "{}: field '{}' = {} is out of range: must be >= 0", path_,
                 field(key), v.dump());
  return v.get<uint64_t>();
}

float JsonFields::real(const std::string& key, double lo, double hi) {
  const json& v = get(key);
  if (!v.is_number()) type_error(path_, field(key), "a number", v);
  const double d = v.get<double>();
  const std::string name = fmt::format("{}: field '{}'", path_, field(key));
  // Beyond float's range the conversion would be undefined.
  LOCKSTEP_CHECK(std::fabs(d) <= FLT_MAX, "{} = {} is out of range: must be in [{}, {}]", name, d,
                 lo, hi);
  const float f = static_cast<float>(d);
  check_range(name, f, lo, hi);
  return f;
}

bool JsonFields::boolean(const std::string& key) {
  const json& v = get(key);
  if (!v.is_boolean()) type_error(path_, field(key), "true or false", v);
  return v.get<bool>();
}

uint64_t JsonFields::hex64(const std::string& key) {
  const std::string& s = as_string(get(key), path_, field(key));
  uint64_t value = 0;
  LOCKSTEP_CHECK(parse_hex64(s, &value), "{}: field '{}' must be 16 hex digits, got {}", path_,
                 field(key), quote_text(s));
  return value;
}

std::vector<std::string> JsonFields::strings(const std::string& key) {
  const json& v = get(key);
  if (!v.is_array()) type_error(path_, field(key), "an array of strings", v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(as_string(v[i], path_, fmt::format("{}[{}]", field(key), i)));
  return out;
}

std::vector<int64_t> JsonFields::integers(const std::string& key, int64_t lo, int64_t hi) {
  const json& v = get(key);
  if (!v.is_array()) type_error(path_, field(key), "an array of integers", v);
  std::vector<int64_t> out;
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(as_integer(v[i], path_, fmt::format("{}[{}]", field(key), i), lo, hi));
  return out;
}

JsonFields JsonFields::object(const std::string& key) {
  return JsonFields(get(key), path_, field(key));
}

std::vector<JsonFields> JsonFields::objects(const std::string& key) {
  const json& v = get(key);
  if (!v.is_array()) type_error(path_, field(key), "an array of objects", v);
  std::vector<JsonFields> out;
  for (size_t i = 0; i < v.size(); ++i)
    out.emplace_back(v[i], path_, fmt::format("{}[{}]", field(key), i));
  return out;
}

std::vector<std::string> JsonFields::keys() const {
  std::vector<std::string> out;
  for (auto it = object_->begin(); it != object_->end(); ++it) out.push_back(it.key());
  return out;
}

void JsonFields::reject_unknown() const {
  for (auto it = object_->begin(); it != object_->end(); ++it)
    LOCKSTEP_CHECK(read_.count(it.key()),
                   "{}: field {} is not known (a file of another format or "
                   "a newer lockstep?)",
                   path_, quote_text(field(it.key()), 64, '\''));
}

}  // namespace lockstep::io

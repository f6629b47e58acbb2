#include "io/manifest.h"

#include <xxhash.h>

#include <climits>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "lockstep/core/error.h"

namespace lockstep::io {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view kSealKey = "\"manifest_xxh64\": \"";
constexpr std::string_view kSealEnd = "\"\n}\n";
constexpr uint64_t kMaxManifestBytes = uint64_t{16} << 20;

std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }
}  // namespace

FileDigest file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "{}: cannot open ({})", path, std::strerror(errno));
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::vector<char> buf(1 << 20);
  FileDigest d;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
    d.bytes += static_cast<uint64_t>(n);
  }
  d.xxh64 = XXH64_digest(st);
  XXH64_freeState(st);
  return d;
}

void verify_file(const std::string& path, const FileDigest& expected) {
  LOCKSTEP_CHECK(fs::exists(path), "{}: missing", path);
  const FileDigest got = file_digest(path);
  LOCKSTEP_CHECK(got.bytes == expected.bytes, "{}: {} bytes but the manifest says {} ({})", path,
                 got.bytes, expected.bytes,
                 got.bytes < expected.bytes ? "truncated" : "changed after it was written");
  LOCKSTEP_CHECK(got.xxh64 == expected.xxh64,
                 "{}: checksum {} does not match the manifest's {} (corrupted)", path,
                 hex(got.xxh64), hex(expected.xxh64));
}

std::map<std::string, FileDigest> digest_files(const std::string& dir,
                                               const std::vector<std::string>& names) {
  std::map<std::string, FileDigest> out;
  for (const auto& name : names) out[name] = file_digest((fs::path(dir) / name).string());
  return out;
}

void verify_files(const std::string& dir, const std::map<std::string, FileDigest>& files) {
  for (const auto& [name, digest] : files) verify_file((fs::path(dir) / name).string(), digest);
}

nlohmann::ordered_json files_json(const std::map<std::string, FileDigest>& files) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [name, d] : files) out[name] = {{"bytes", d.bytes}, {"xxh64", hex(d.xxh64)}};
  return out;
}

std::map<std::string, FileDigest> read_files(JsonFields& manifest,
                                             const std::vector<std::string>& names) {
  JsonFields files = manifest.object("files");
  std::map<std::string, FileDigest> out;
  for (const auto& name : names) {
    JsonFields entry = files.object(name);
    out[name] = {entry.unsigned_integer("bytes"), entry.hex64("xxh64")};
    entry.reject_unknown();
  }
  files.reject_unknown();
  return out;
}

std::string seal_manifest(const nlohmann::ordered_json& body) {
  std::string text = body.dump(2);  // "{\n  ...\n}"
  LOCKSTEP_ASSERT(body.is_object() && !body.empty() && !body.contains("manifest_xxh64"));
  text.resize(text.size() - 2);
  text += ",\n  ";
  text += kSealKey;
  return text + hex(XXH64(text.data(), text.size(), 0)) + std::string(kSealEnd);
}

bool check_manifest_seal(std::string_view text, const std::string& path) {
  const size_t key = text.rfind(kSealKey);
  if (key == std::string_view::npos) return false;
  const size_t digits = key + kSealKey.size();
  LOCKSTEP_CHECK(
      text.size() == digits + 16 + kSealEnd.size() && text.substr(digits + 16) == kSealEnd,
      "{}: checksum mismatch: the manifest does not end with its checksum "
      "\"manifest_xxh64\" (truncated or edited)",
      path);
  const std::string_view stored = text.substr(digits, 16);
  const uint64_t computed = XXH64(text.data(), digits, 0);
  LOCKSTEP_CHECK(stored == hex(computed),  // as written: lower case, so that no byte may change
                 "{}: checksum mismatch (manifest_xxh64 is {}, the manifest hashes to {}): it is "
                 "corrupted or was edited",
                 path, quote_text(stored), hex(computed));
  return true;
}

int read_manifest_version(JsonFields& manifest, bool sealed, const std::string& key, int newest,
                          const char* what) {
  const std::string& path = manifest.path();
  const int version = static_cast<int>(manifest.integer(key, 0, INT_MAX));
  LOCKSTEP_CHECK(version >= 1 && version <= newest,
                 "{}: {} {} is not supported: this lockstep reads 1 to {} (a {} of a newer "
                 "lockstep?)",
                 path, key, version, newest, what);
  if (version >= 2) {
    LOCKSTEP_CHECK(sealed,
                   "{}: checksum missing: {} {} ends with \"manifest_xxh64\" (truncated or edited)",
                   path, key, version);
    manifest.hex64("manifest_xxh64");  // verified by check_manifest_seal
  }
  return version;
}

std::string read_manifest_text(const std::string& path, std::string_view missing_hint) {
  std::error_code ec;
  LOCKSTEP_CHECK(fs::exists(path, ec), "{}: missing: {}", path, missing_hint);
  const uint64_t size = fs::file_size(path, ec);
  LOCKSTEP_CHECK(!ec, "{}: cannot read ({})", path, ec.message());
  LOCKSTEP_CHECK(size <= kMaxManifestBytes, "{}: {} bytes, too large for a manifest", path, size);
  std::ifstream in(path, std::ios::binary);
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  LOCKSTEP_CHECK(static_cast<uint64_t>(in.gcount()) == size, "{}: cannot read ({})", path,
                 std::strerror(errno));
  return text;
}

}  // namespace lockstep::io

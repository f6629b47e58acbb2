#pragma once
// Internal: the manifest.json of a directory written by write_directory_atomically (checkpoints,
// student bundles): the size + XXH64 of each file, and the manifest's own checksum.
//
// Seal: a manifest's text ends with the member  "manifest_xxh64": "<16 hex digits>"  followed
// by "\n}\n"; the digits are the XXH64 (seed 0) of every byte of the file before them. It is
// checked on the raw bytes before anything is parsed, so a changed byte anywhere — whitespace
// included — is refused, and a hand-edited manifest must be written again by lockstep.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io/json_fields.h"

namespace lockstep::io {

struct FileDigest {
  uint64_t bytes = 0;
  uint64_t xxh64 = 0;
  bool operator==(const FileDigest& o) const { return bytes == o.bytes && xxh64 == o.xxh64; }
};

/// Size and XXH64 of a file's bytes. Throws Error naming the path when it cannot be read.
FileDigest file_digest(const std::string& path);

/// Verifies that `path` exists and has the size and checksum of `expected`; throws Error naming
/// the file and saying whether it is missing, truncated or corrupted.
void verify_file(const std::string& path, const FileDigest& expected);

/// The digests of `dir`/<name> for every name.
std::map<std::string, FileDigest> digest_files(const std::string& dir,
                                               const std::vector<std::string>& names);
/// Verifies every file of `files` in `dir` (see verify_file).
void verify_files(const std::string& dir, const std::map<std::string, FileDigest>& files);

/// The manifest member "files": {"<name>": {"bytes": n, "xxh64": "<16 hex digits>"}, ...}.
nlohmann::ordered_json files_json(const std::map<std::string, FileDigest>& files);
/// Reads the member "files" of `manifest` strictly: exactly `names`, each {bytes, xxh64}.
std::map<std::string, FileDigest> read_files(JsonFields& manifest,
                                             const std::vector<std::string>& names);

/// The text of a manifest: `body` (a non-empty JSON object without "manifest_xxh64") with
/// 2-space indentation, sealed (see above).
std::string seal_manifest(const nlohmann::ordered_json& body);
/// Checks the seal of `text`. Returns false when there is none ("manifest_xxh64" does not occur:
/// a manifest of an older format); throws Error "<path>: checksum mismatch ..." when it is there
/// but does not match or is not where a seal belongs.
bool check_manifest_seal(std::string_view text, const std::string& path);

/// Reads the version field `key` of `manifest` (whose seal check_manifest_seal returned
/// `sealed`): Error unless it is in [1, newest] (`what` names the kind of directory in the
/// message, e.g. "checkpoint"), and, from version 2 on, unless the manifest was sealed.
int read_manifest_version(JsonFields& manifest, bool sealed, const std::string& key, int newest,
                          const char* what);

/// The bytes of the manifest at `path` (at most 16 MiB). Throws Error "<path>: missing: <hint>"
/// when it does not exist, naming the path for any other failure.
std::string read_manifest_text(const std::string& path, std::string_view missing_hint);

}  // namespace lockstep::io

#pragma once
// Shared by the manifest fuzz targets: random bytes almost never carry a valid checksum
// ("manifest_xxh64", lib/src/io/manifest.h), so each input is parsed twice: as it is (the
// checksum check itself), and sealed again (the field checks behind it).

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <fmt/format.h>

#include <string>

#include "fuzz/fuzz_target.h"

namespace lockstep::fuzz {

/// `text` with the 16 digits after its last "manifest_xxh64": " replaced by the XXH64 of every
/// byte before them (unchanged when there is no such key or too few bytes after it).
inline std::string reseal(std::string text) {
  const std::string key = "\"manifest_xxh64\": \"";
  const size_t at = text.rfind(key);
  if (at == std::string::npos || text.size() - (at + key.size()) < 16) return text;
  const size_t digits = at + key.size();
  text.replace(digits, 16, fmt::format("{:016x}", XXH64(text.data(), digits, 0)));
  return text;
}

template <class Parse>
int fuzz_manifest(const uint8_t* data, size_t size, Parse&& parse) {
  const std::string text(as_text(data, size));
  accept_only_lockstep_errors([&] { parse(text); });
  const std::string sealed = reseal(text);
  if (sealed != text) accept_only_lockstep_errors([&] { parse(sealed); });
  return 0;
}

}  // namespace lockstep::fuzz

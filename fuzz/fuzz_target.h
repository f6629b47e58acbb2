#pragma once
// Shared by the fuzz targets (fuzz/<target>.cpp): the one rule every target follows, and a
// scratch file for parsers that only read from a path.
//
// A target feeds the bytes to one parser. The parser may reject them only with lockstep::Error;
// any other exception (std::out_of_range, nlohmann::json::exception, ...) escapes
// LLVMFuzzerTestOneInput, terminates the process and is reported as a crash, as are ASan/UBSan
// findings, hangs (-timeout) and huge allocations (-rss_limit_mb).
//
// Built two ways (fuzz/CMakeLists.txt): with LOCKSTEP_BUILD_FUZZ (clang) as libFuzzer binaries
// run by scripts/fuzz.sh, otherwise with replay_main.cpp as plain programs that the ctest
// fuzz_replay_<target> runs over fuzz/corpus/<target>/. docs/fuzzing.md has the details.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "lockstep/core/error.h"

namespace lockstep::fuzz {

/// The input as text (the bytes as they are, NULs included).
inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Runs `parse()`; lockstep::Error is a clean rejection of the input. Returns 0, as libFuzzer
/// expects.
template <class F>
int accept_only_lockstep_errors(F&& parse) {
  try {
    parse();
  } catch (const lockstep::Error&) {
  }
  return 0;
}

/// A property that must hold for every accepted input (e.g. a round trip); on failure prints
/// `what` and aborts, so the fuzzer keeps the input as a crash.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

/// One file per process (and per target name) under the temp directory, rewritten with each
/// input, for parsers that take a path; removed when the process exits normally.
class ScratchFile {
 public:
  explicit ScratchFile(std::string_view name) {
    path_ = (std::filesystem::temp_directory_path() /
             ("lockstep-fuzz-" + std::to_string(::getpid()) + "-" + std::string(name)))
                .string();
  }
  ~ScratchFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  /// Replaces the file's contents with `bytes` and returns its path.
  const std::string& write(std::string_view bytes) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    // An empty input may have data() == nullptr, which fwrite must not be given (UBSan).
    if (f == nullptr ||
        (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) ||
        std::fclose(f) != 0) {
      std::perror(path_.c_str());  // the harness, not the parser, failed: stop here
      std::abort();
    }
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace lockstep::fuzz

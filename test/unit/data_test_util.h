#pragma once
// Helpers for the data tests: a scratch directory, file writing, and batch comparison.

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "lockstep/data/batch.h"
#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <iterator>

namespace lockstep::test {

/// A fresh directory under the system temp dir, removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("lockstep-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// The path of `name` inside the directory.
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  /// Writes `contents` to `name` and returns its path.
  std::string write(const std::string& name, const std::string& contents) const {
    const std::string p = file(name);
    std::ofstream out(p, std::ios::binary);
    out << contents;
    REQUIRE(out.good());
    return p;
  }
  /// Names of the entries in the directory, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Runs `binary args` with stdout and stderr captured into `output` (through a file in
/// `scratch`); returns the exit code (-1 when it did not exit normally).
inline int run_tool(const std::string& binary, const std::string& args, const TempDir& scratch,
                    std::string& output) {
  const std::string log = scratch.file("tool.log");
  const int status = std::system((binary + " " + args + " > " + log + " 2>&1").c_str());
  std::ifstream in(log);
  output.assign(std::istreambuf_iterator<char>(in), {});
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Appends the samples of `b` to `a` (same layout), shifting b's CSR offsets.
inline void append_batch(data::Batch& a, const data::Batch& b) {
  if (a.sparse.empty()) a.sparse.resize(b.sparse.size());
  REQUIRE(a.sparse.size() == b.sparse.size());
  for (size_t s = 0; s < b.sparse.size(); ++s) {
    auto& dst = a.sparse[s];
    const auto& src = b.sparse[s];
    const int64_t base = static_cast<int64_t>(dst.keys.size());
    dst.keys.insert(dst.keys.end(), src.keys.begin(), src.keys.end());
    for (size_t i = 1; i < src.offsets.size(); ++i) dst.offsets.push_back(base + src.offsets[i]);
  }
  a.dense.insert(a.dense.end(), b.dense.begin(), b.dense.end());
  a.labels.insert(a.labels.end(), b.labels.begin(), b.labels.end());
  a.sample_ids.insert(a.sample_ids.end(), b.sample_ids.begin(), b.sample_ids.end());
  a.size += b.size;
}

/// Requires two batches to be identical bit for bit, naming the first difference.
inline void require_same_batch(const data::Batch& a, const data::Batch& b,
                               const std::string& what) {
  INFO(what);
  REQUIRE(a.size == b.size);
  require_bitwise_equal(a.labels, b.labels, what + ": labels");
  require_bitwise_equal(a.dense, b.dense, what + ": dense");
  require_bitwise_equal(a.sample_ids, b.sample_ids, what + ": sample_ids");
  REQUIRE(a.sparse.size() == b.sparse.size());
  for (size_t s = 0; s < a.sparse.size(); ++s) {
    require_bitwise_equal(a.sparse[s].offsets, b.sparse[s].offsets,
                          what + ": offsets of sparse slot " + std::to_string(s));
    require_bitwise_equal(a.sparse[s].keys, b.sparse[s].keys,
                          what + ": keys of sparse slot " + std::to_string(s));
  }
}

/// The ids of sample b in a CSR column.
inline std::vector<uint64_t> ids_of(const data::SparseColumn& col, int64_t b) {
  return {col.keys.begin() + col.offsets[b], col.keys.begin() + col.offsets[b + 1]};
}

}  // namespace lockstep::test

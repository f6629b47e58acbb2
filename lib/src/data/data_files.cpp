#include "lockstep/data/data_files.h"

#include <glob.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include "lockstep/core/error.h"

namespace lockstep::data {

namespace fs = std::filesystem;

namespace {

bool is_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && (name[0] == '.' || name[0] == '_');
}

}  // namespace

std::vector<std::string> expand_data_paths(const std::vector<std::string>& specs,
                                           const std::string& what) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& spec : specs) {
    std::vector<std::string> found;
    std::error_code ec;
    if (fs::is_directory(spec, ec)) {
      for (const auto& e : fs::directory_iterator(spec, ec)) {
        if (e.is_regular_file() && !hidden(e.path())) found.push_back(e.path().string());
      }
      LOCKSTEP_CHECK(!ec, "{} '{}': cannot list the directory: {}", what, spec, ec.message());
      LOCKSTEP_CHECK(!found.empty(), "{} '{}': the directory holds no data files", what, spec);
    } else if (fs::exists(spec, ec)) {
      LOCKSTEP_CHECK(fs::is_regular_file(spec, ec), "{} '{}' is not a regular file", what, spec);
      found.push_back(spec);
    } else if (is_glob(spec)) {
      glob_t g{};
      const int rc = ::glob(spec.c_str(), GLOB_ERR, nullptr, &g);
      if (rc == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i)
          if (fs::is_regular_file(g.gl_pathv[i], ec)) found.push_back(g.gl_pathv[i]);
      }
      ::globfree(&g);
      LOCKSTEP_CHECK(rc == 0 || rc == GLOB_NOMATCH, "{} '{}': cannot expand the pattern", what,
                     spec);
      LOCKSTEP_CHECK(!found.empty(), "{} '{}': the pattern matches no file", what, spec);
    } else {
      throw Error(fmt::format("{} '{}': no such file or directory", what, spec));
    }
    std::sort(found.begin(), found.end());
    for (std::string& f : found) {
      const std::string key = fs::weakly_canonical(f, ec).string();
      LOCKSTEP_CHECK(seen.insert(ec ? f : key).second,
                     "{}: '{}' is named twice (its records would be read twice)", what, f);
      out.push_back(std::move(f));
    }
  }
  LOCKSTEP_CHECK(!out.empty(), "{}: no files given", what);
  return out;
}

std::vector<uint64_t> file_sizes(const std::vector<std::string>& files) {
  std::vector<uint64_t> sizes;
  for (const std::string& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    LOCKSTEP_CHECK(!ec, "{}: cannot read the data file: {}", f, ec.message());
    sizes.push_back(static_cast<uint64_t>(size));
  }
  return sizes;
}

Share plan_share(const std::vector<uint64_t>& sizes, int rank, int ranks) {
  LOCKSTEP_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank {} outside [0, {})", rank, ranks);
  const auto n = static_cast<int64_t>(sizes.size());
  const uint64_t total = std::accumulate(sizes.begin(), sizes.end(), uint64_t{0});
  Share share;
  if (n >= ranks) {
    // Largest first to the least-loaded rank (ties: lower file index, lower rank).
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return sizes[a] > sizes[b]; });
    std::vector<uint64_t> load(static_cast<size_t>(ranks), 0);
    std::vector<int> owner(static_cast<size_t>(n), 0);
    for (const int64_t f : order) {
      const auto r = std::min_element(load.begin(), load.end()) - load.begin();
      owner[f] = static_cast<int>(r);
      load[static_cast<size_t>(r)] += sizes[f];
    }
    const uint64_t most = *std::max_element(load.begin(), load.end());
    // Balanced enough: within 5/4 of the mean (always when every file is empty).
    if (most * 4 * static_cast<uint64_t>(ranks) <= total * 5 || total == 0) {
      share.whole_files = true;
      for (int64_t f = 0; f < n; ++f)
        if (owner[f] == rank) share.ranges.push_back({f, 0, sizes[f]});
      return share;
    }
  }
  // One byte stream cut into equal ranges: [total·r/P, total·(r+1)/P).
  const auto cut = [&](int r) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(total) * r) / ranks);
  };
  const uint64_t lo = cut(rank), hi = cut(rank + 1);
  uint64_t at = 0;
  for (int64_t f = 0; f < n; ++f) {
    const uint64_t b = std::max(lo, at), e = std::min(hi, at + sizes[f]);
    if (b < e) share.ranges.push_back({f, b - at, e - at});
    at += sizes[f];
  }
  return share;
}

}  // namespace lockstep::data

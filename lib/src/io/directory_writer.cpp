#include "io/directory_writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "lockstep/core/error.h"

namespace lockstep::io {

namespace fs = std::filesystem;

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;  // best effort: some file systems refuse to open directories
  ::fsync(fd);
  ::close(fd);
}

std::string file_xxh64(const std::string& path, uint64_t* size) {
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "{}: cannot open", path);
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  std::vector<char> buf(1 << 20);
  *size = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    XXH64_update(st, buf.data(), static_cast<size_t>(n));
    *size += static_cast<uint64_t>(n);
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return fmt::format("{:016x}", h);
}

void verify_file(const std::string& path, uint64_t bytes, const std::string& xxh64) {
  LOCKSTEP_CHECK(fs::exists(path), "{}: missing", path);
  uint64_t size = 0;
  const std::string hash = file_xxh64(path, &size);
  LOCKSTEP_CHECK(size == bytes, "{}: {} bytes but the manifest says {} (truncated)", path, size,
                 bytes);
  LOCKSTEP_CHECK(hash == xxh64, "{}: checksum {} does not match the manifest's {} (corrupted)",
                 path, hash, xxh64);
}

void write_directory_atomically(const std::string& final_dir,
                                const std::function<void(const std::string& tmp)>& fill) {
  const fs::path target(final_dir);
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  LOCKSTEP_CHECK(!ec, "{}: cannot create ({})", parent.string(), ec.message());
  const fs::path tmp =
      parent / fmt::format(".tmp-{}-{}", target.filename().string(), ::getpid());
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  LOCKSTEP_CHECK(!ec, "{}: cannot create ({})", tmp.string(), ec.message());
  try {
    fill(tmp.string());
    fsync_path(tmp.string());
    if (fs::exists(target)) fs::remove_all(target);
    fs::rename(tmp, target);
    fsync_path(parent.string());
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw Error(fmt::format("{}: writing failed: {}", final_dir, e.what()));
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace lockstep::io

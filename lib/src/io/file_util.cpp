#include "io/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "lockstep/core/error.h"

namespace lockstep::io {

void FileWriter::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    LOCKSTEP_CHECK(n > 0, "{}: write failed ({})", path_, std::strerror(errno));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow opening directories
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomically(const std::string& path, const std::function<void(FileWriter&)>& fill) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LOCKSTEP_CHECK(fd >= 0, "{}: cannot create ({})", tmp, std::strerror(errno));
  try {
    FileWriter writer(fd, tmp);
    fill(writer);
    LOCKSTEP_CHECK(::fsync(fd) == 0, "{}: fsync failed ({})", tmp, std::strerror(errno));
    LOCKSTEP_CHECK(::close(fd) == 0, "{}: close failed ({})", tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw Error(fmt::format("{}: cannot rename {} into place ({})", path, tmp, std::strerror(err)));
  }
  fsync_directory(std::filesystem::path(path).parent_path().string());
}

}  // namespace lockstep::io

#pragma once
// Internal: crash-safe file writing.

#include <cstddef>
#include <functional>
#include <string>

namespace lockstep::io {

/// Unbuffered-by-us writer over a POSIX file descriptor; every failure throws Error naming the path.
class FileWriter {
 public:
  FileWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  void write(const void* data, size_t bytes);

 private:
  int fd_;
  std::string path_;
};

/// Writes a file so that `path` holds either its old contents or the complete new ones, never a
/// partial file: `fill` writes into `path.tmp.<pid>`, which is fsynced, renamed over `path`, and
/// the directory fsynced. If `fill` throws, the temporary file is removed and the error rethrown.
void write_file_atomically(const std::string& path, const std::function<void(FileWriter&)>& fill);

/// fsync a directory (after creating or renaming entries in it).
void fsync_directory(const std::string& dir);

}  // namespace lockstep::io

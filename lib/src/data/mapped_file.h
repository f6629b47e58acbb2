#pragma once
// A read-only memory map of a whole file (empty files map to nothing).

#include <cstdint>
#include <string>

namespace lockstep::data {

class MappedFile {
 public:
  MappedFile() = default;
  /// Maps `path`; throws Error naming it when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const char* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace lockstep::data

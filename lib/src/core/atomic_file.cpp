#include "lockstep/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "lockstep/core/error.h"

namespace lockstep {

namespace {

std::string system_reason() { return std::strerror(errno); }

std::string make_temp_path(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path p(path);
  const std::string name = fmt::format(".{}.tmp-{}-{}", p.filename().string(),
                                       static_cast<long>(::getpid()), counter.fetch_add(1));
  return (p.parent_path() / name).string();
}

// Makes the rename durable. Best effort: some file systems refuse fsync on directories.
void sync_parent_directory(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temp_path_(make_temp_path(path_)) {
  LOCKSTEP_CHECK(!path_.empty(), "cannot write a file with an empty path");
  file_ = std::fopen(temp_path_.c_str(), "wb");
  LOCKSTEP_CHECK(file_ != nullptr, "cannot create '{}' (temporary file for '{}'): {}", temp_path_,
                 path_, system_reason());
}

AtomicFileWriter::~AtomicFileWriter() { discard(); }

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      file_(std::exchange(other.file_, nullptr)),
      bytes_(other.bytes_),
      finished_(std::exchange(other.finished_, true)) {}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& other) noexcept {
  if (this != &other) {
    discard();
    path_ = std::move(other.path_);
    temp_path_ = std::move(other.temp_path_);
    file_ = std::exchange(other.file_, nullptr);
    bytes_ = other.bytes_;
    finished_ = std::exchange(other.finished_, true);
  }
  return *this;
}

void AtomicFileWriter::write(std::string_view bytes) {
  LOCKSTEP_CHECK(file_ != nullptr,
                 "cannot write to '{}': it was already closed, committed or "
                 "discarded",
                 path_);
  if (bytes.empty()) return;
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), file_);
  LOCKSTEP_CHECK(n == bytes.size(), "cannot write to '{}': {}", temp_path_, system_reason());
  bytes_ += static_cast<int64_t>(n);
}

void AtomicFileWriter::close() {
  LOCKSTEP_CHECK(!finished_, "'{}' was already committed or discarded", path_);
  if (file_ == nullptr) return;
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const std::string reason = flushed ? "" : system_reason();
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) {
    const std::string why = flushed ? system_reason() : reason;
    discard();
    throw Error(fmt::format("cannot write to '{}': {}", temp_path_, why));
  }
}

void AtomicFileWriter::commit() {
  close();
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const std::string why = system_reason();
    discard();
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", temp_path_, path_, why));
  }
  finished_ = true;
  sync_parent_directory(path_);
}

void AtomicFileWriter::discard() noexcept {
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (!finished_ && !temp_path_.empty()) {
    std::remove(temp_path_.c_str());
    finished_ = true;  // nothing left to clean up
  }
}

void write_file_atomically(const std::string& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.write(contents);
  writer.commit();
}

void probe_writable_directory(const std::string& dir, std::string_view what, bool create) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (create) {
    fs::create_directories(dir, ec);
    LOCKSTEP_CHECK(!ec, "{} '{}' is not writable: cannot create it: {}", what, dir, ec.message());
  }
  const fs::path probe = fs::path(dir) / fmt::format(".lockstep-probe-{}", ::getpid());
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  LOCKSTEP_CHECK(f != nullptr, "{} '{}' is not writable: {}", what, dir, std::strerror(errno));
  std::fclose(f);
  fs::remove(probe, ec);
}

void probe_writable_parent(const std::string& path, std::string_view what) {
  const auto parent = std::filesystem::path(directory_target(path)).parent_path();
  probe_writable_directory(parent.empty() ? std::string(".") : parent.string(), what, false);
}

std::string directory_target(const std::string& path) {
  namespace fs = std::filesystem;
  const auto strip = [](fs::path p) {  // "out/" is "out"
    while (p.filename().empty() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
    return p;
  };
  fs::path p = strip(fs::path(path));
  if (p.filename() == "." || p.filename() == "..") {  // ".", "a/..": the directory they name
    std::error_code ec;
    const fs::path abs = fs::absolute(p, ec);
    p = strip((ec ? p : abs).lexically_normal());
  }
  return p.string();
}

void check_replaceable_directory(const std::string& path, std::string_view what) {
  namespace fs = std::filesystem;
  const fs::path target(directory_target(path));
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(target, ec);
  if (!fs::exists(st)) return;
  const auto refuse = [&](std::string_view why) {
    throw Error(fmt::format(
        "{} '{}' {}: lockstep replaces only directories it wrote itself (a saved model, a "
        "checkpoint step, a student bundle, a sparse export); choose a new path, or remove it "
        "yourself",
        what, path, why));
  };
  if (!fs::is_directory(st)) refuse("exists and is not a directory");
  if (fs::equivalent(target, fs::current_path(ec), ec)) refuse("is the current directory");
  bool manifest = false;
  for (fs::directory_iterator it(target, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec))
      refuse(fmt::format("exists and holds '{}', which is not a file of a model directory",
                         it->path().filename().string()));
    if (it->path().filename() == "manifest.json") {
      // Every manifest lockstep writes is sealed by "manifest_xxh64" (io/manifest.h); older
      // checkpoints have "format_version", older bundles and exports "format": "lockstep-...".
      std::ifstream in(it->path(), std::ios::binary);
      const std::string text(std::istreambuf_iterator<char>(in), {});
      manifest = text.find("\"manifest_xxh64\"") != std::string::npos ||
                 text.find("\"format_version\"") != std::string::npos ||
                 text.find("\"format\": \"lockstep-") != std::string::npos;
    }
  }
  if (ec) refuse(fmt::format("cannot be listed ({})", ec.message()));
  if (!manifest) refuse("exists and has no manifest.json written by lockstep");
}

}  // namespace lockstep


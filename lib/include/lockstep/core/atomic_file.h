#pragma once
// AtomicFileWriter: write a file so that its final name only ever holds complete contents.

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace lockstep {

/// Writes `path` through a temporary file in the same directory
/// (".<name>.tmp-<pid>-<n>") and renames it into place on commit(), after flushing and
/// fsync-ing it. Readers therefore see either the previous file or the complete new one, never
/// a prefix; a run that fails or throws before commit() leaves nothing under `path` (the
/// destructor deletes the temporary file; a killed process may leave the hidden temporary
/// behind, never a partial `path`).
///
/// Move-only, not thread-safe. Every failure (cannot create, short write, rename) throws
/// lockstep::Error naming the path and the system's reason.
class AtomicFileWriter {
 public:
  /// Creates the temporary file; the directory of `path` must exist.
  explicit AtomicFileWriter(std::string path);
  /// Deletes the temporary file unless commit() succeeded. Never throws.
  ~AtomicFileWriter();
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  /// Appends bytes to the temporary file.
  void write(std::string_view bytes);
  /// Flushes, fsyncs and closes the temporary file without renaming it, so that a program can
  /// hold many finished files without holding their descriptors. No write() after this.
  void close();
  /// close() if still open, then renames the temporary file to path(). Call once.
  void commit();
  /// Deletes the temporary file now (commit() is then no longer possible). Never throws.
  void discard() noexcept;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  /// Bytes written so far.
  int64_t bytes_written() const { return bytes_; }

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  int64_t bytes_ = 0;
  bool finished_ = false;  // committed or discarded: no temporary file to clean up
};

/// Writes `contents` to `path` atomically (see AtomicFileWriter).
void write_file_atomically(const std::string& path, std::string_view contents);

/// Outputs are checked before a long run, so that no result is lost at its end. Throws Error
/// "<what> '<dir>' is not writable: <reason>" unless a probe file can be created and removed in
/// `dir`; `create`: make `dir` (and its parents) first when missing.
void probe_writable_directory(const std::string& dir, std::string_view what, bool create);
/// The same for the existing directory that will hold the file or directory `path` (`path`
/// itself is untouched; nothing is created).
void probe_writable_parent(const std::string& path, std::string_view what);

/// `path` spelled as the directory it names: "out/" is "out", "." and "a/.." are absolute.
std::string directory_target(const std::string& path);

/// Whether a directory lockstep writes whole (a saved or best model, a checkpoint step, a
/// student bundle, a sparse base or delta) may go to `path`: nothing is there, or a directory
/// lockstep wrote before (a manifest.json of lockstep's, files only, no subdirectory), which it
/// then replaces. Anything else — a file, a directory of other files, the current directory, a
/// checkpoint root holding step directories — throws Error "<what> '<path>' ...": lockstep never
/// removes what it did not write. Checked again when the directory is written.
void check_replaceable_directory(const std::string& path, std::string_view what);

}  // namespace lockstep

#pragma once
// Internal: crash-safe writing of a directory of files (checkpoints, serving bundles), and the
// size + XXH64 of files for their manifests.

#include <cstdint>
#include <functional>
#include <string>

namespace lockstep::io {

/// XXH64 of a file's bytes as 16 hex digits; *size receives its length. Throws Error naming the
/// path when it cannot be read.
std::string file_xxh64(const std::string& path, uint64_t* size);

/// Verifies that `path` has `bytes` bytes and the XXH64 `xxh64` (as written by a manifest);
/// throws Error naming the file and saying whether it is truncated or corrupted.
void verify_file(const std::string& path, uint64_t bytes, const std::string& xxh64);

/// Builds a directory so that `final_dir` holds either its previous contents or the complete new
/// ones: `fill(tmp)` writes the files into a fresh temporary directory next to it; then every
/// file has been fsynced (by AtomicFileWriter), the directory is fsynced, the old `final_dir`
/// (if any) is removed and the temporary one renamed into place, and the parent fsynced. If
/// `fill` throws, the temporary directory is removed and the error rethrown.
void write_directory_atomically(const std::string& final_dir,
                                const std::function<void(const std::string& tmp)>& fill);

/// fsync a file or directory (best effort for directories).
void fsync_path(const std::string& path);

}  // namespace lockstep::io

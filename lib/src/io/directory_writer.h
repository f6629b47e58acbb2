#pragma once
// Internal: crash-safe writing of a directory of files (checkpoints, serving bundles), and the
// clean-up of what a crashed write leaves behind.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::io {

/// The name of the temporary directory in which process `pid` of this host builds the directory
/// `target_name`: ".tmp-<target_name>@<host>-<pid>".
std::string temporary_directory_name(std::string_view target_name, long pid);

/// Builds a directory so that `final_dir` holds either its previous contents or the complete new
/// ones: `fill(tmp)` writes the files into a fresh temporary directory next to it (named by
/// temporary_directory_name); then every file has been fsynced (by AtomicFileWriter), the
/// directory is fsynced, the old `final_dir` (if any) is removed and the temporary one renamed
/// into place, and the parent fsynced. If `fill` throws, the temporary directory is removed and
/// the error rethrown; a process killed meanwhile leaves it behind (see remove_stale_temporaries).
void write_directory_atomically(const std::string& final_dir,
                                const std::function<void(const std::string& tmp)>& fill);

/// Removes the temporary directories of write_directory_atomically in `dir` whose target name
/// starts with `target_prefix` and that were left by a process of this host that no longer runs
/// (a crashed or killed write), logging a warning for each; returns their paths. Temporaries of
/// another host (a shared file system) or of a process still running are left in place, with a
/// warning. Never throws: a directory that cannot be listed or removed is only logged.
std::vector<std::string> remove_stale_temporaries(const std::string& dir,
                                                  std::string_view target_prefix);

/// fsync a file or directory (best effort for directories).
void fsync_path(const std::string& path);

}  // namespace lockstep::io

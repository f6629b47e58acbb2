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
/// directory is fsynced, the temporary one takes the place of the old `final_dir` (if any) in one
/// step (renameat2 RENAME_EXCHANGE; where a file system lacks it, the old one is removed first),
/// the old contents are removed, and the parent is fsynced. An existing `final_dir` must be a
/// directory lockstep wrote (check_replaceable_directory, lockstep/core/atomic_file.h, checked
/// before `fill` and again before the swap): nothing else is ever removed. "out/" writes "out".
/// If `fill` throws, the temporary directory is removed and the error rethrown; a process killed
/// meanwhile leaves it behind (see remove_stale_temporaries).
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

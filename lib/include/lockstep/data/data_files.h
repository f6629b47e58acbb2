#pragma once
// Data files from anywhere, read once: expanding files, directories and globs, and splitting
// them over ranks so that every record is read by exactly one rank.
//
// Sharding (docs/data.md, "Reading files on several ranks"): with at least as many files as
// ranks, whole files are dealt to ranks, largest first, each to the rank with the fewest bytes so
// far (ties: the lower rank), as long as no rank gets more than 5/4 of the mean; otherwise the
// files are seen as one byte stream (in list order) cut into `ranks` equal byte ranges. A range
// owns the records whose first byte lies in it, so each rank finds its first record by skipping
// to the byte after the first newline at or after its start: no record is read twice or lost,
// and a rank reads only its own bytes (plus the tail of one record per range boundary).

#include <cstdint>
#include <string>
#include <vector>

namespace lockstep::data {

/// Each spec is a file, a directory (its regular files whose names do not start with '.' or
/// '_', not recursive) or a glob pattern (`*`, `?`, `[...]`). The result is sorted by path within
/// each spec and spec order is kept; a file named twice is an error. Throws Error naming the spec
/// when it matches nothing or cannot be read. `what` names the list in messages ("--train").
std::vector<std::string> expand_data_paths(const std::vector<std::string>& specs,
                                           const std::string& what);

/// A byte range of one file of a list.
struct FileRange {
  int64_t file = 0;    ///< index in the file list
  uint64_t begin = 0;  ///< first byte (a record starting at or after it belongs to this range)
  uint64_t end = 0;    ///< one past the last byte where a record of this range may start
};

/// This rank's share of files with the given sizes, in file order (see the header comment).
/// `whole_files` tells which rule was used.
struct Share {
  std::vector<FileRange> ranges;
  bool whole_files = false;
};
Share plan_share(const std::vector<uint64_t>& sizes, int rank, int ranks);

/// The sizes of `files` (Error naming a file that cannot be read).
std::vector<uint64_t> file_sizes(const std::vector<std::string>& files);

}  // namespace lockstep::data

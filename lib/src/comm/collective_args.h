#pragma once
// Internal: argument checks shared by the communicator backends, so that misuse reads the same
// whichever backend runs.

#include <cstdint>
#include <vector>

#include "lockstep/comm/communicator.h"

namespace lockstep::comm::detail {

inline void check_count(const char* op, int64_t count, const void* data) {
  LOCKSTEP_CHECK(count >= 0, "{}: count = {} must not be negative", op, count);
  LOCKSTEP_CHECK(count == 0 || data != nullptr, "{}: {} elements at a null pointer", op, count);
}

/// Checks the per-rank counts of all_gather_v and returns their sum.
inline int64_t check_gather_counts(const std::vector<int64_t>& counts, int size, int rank,
                                   const void* send, const void* recv) {
  LOCKSTEP_CHECK(static_cast<int64_t>(counts.size()) == size,
                 "all_gather_v: {} counts given for {} ranks (one per rank is needed)",
                 counts.size(), size);
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    LOCKSTEP_CHECK(counts[r] >= 0, "all_gather_v: counts[{}] = {} must not be negative", r,
                   counts[r]);
    total += counts[r];
  }
  LOCKSTEP_CHECK(counts[static_cast<size_t>(rank)] == 0 || send != nullptr,
                 "all_gather_v: rank {} sends {} elements from a null pointer", rank,
                 counts[static_cast<size_t>(rank)]);
  LOCKSTEP_CHECK(total == 0 || recv != nullptr,
                 "all_gather_v: {} elements are received into a null pointer", total);
  return total;
}

inline void check_root(int root, int size) {
  LOCKSTEP_CHECK(root >= 0 && root < size, "broadcast: root = {} is not a rank (0..{})", root,
                 size - 1);
}

}  // namespace lockstep::comm::detail

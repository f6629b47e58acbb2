#pragma once
// A mini-batch on the host, in the layout every data source produces and every model consumes.

#include <cstdint>
#include <vector>

namespace lockstep::data {

/// One multi-hot or sequence column of a batch in CSR form: sample b owns
/// keys[offsets[b] .. offsets[b+1]). Sequence columns keep their ids in order, oldest first.
/// Keys are raw 64-bit feature signs ("feasigns"); tables map them to rows.
struct SparseColumn {
  std::vector<int64_t> offsets{0};  // (size + 1), offsets[0] == 0, non-decreasing
  std::vector<uint64_t> keys;       // (offsets.back())
};

/// `size` samples. Columns are in the order of the schema's sparse/sequence columns.
struct Batch {
  int64_t size = 0;
  std::vector<SparseColumn> sparse;
  std::vector<float> dense;          // (size, num_dense) row-major
  std::vector<float> labels;         // (size), 0 or 1 (any value in [0, 1] is accepted)
  std::vector<uint64_t> sample_ids;  // (size), global sample index: exactly-once accounting

  int64_t num_dense() const { return size > 0 ? static_cast<int64_t>(dense.size()) / size : 0; }
};

}  // namespace lockstep::data

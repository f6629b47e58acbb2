#pragma once
// Shared by the text fuzz targets: record-by-record comparison of two batches of one schema.

#include <cstdint>
#include <cstring>

#include "lockstep/data/batch.h"

namespace lockstep::fuzz {

/// Record i of `a` equals record j of `b`: label and dense values bitwise (-0 and 0 differ),
/// every sparse column's ids in order, and the sample ids when `compare_ids` (readers that number
/// records differently — record index, byte offset — compare without them). `num_dense` is the
/// schema's dense width.
inline bool same_record(const data::Batch& a, int64_t i, const data::Batch& b, int64_t j,
                        int64_t num_dense, bool compare_ids) {
  if (compare_ids && a.sample_ids[i] != b.sample_ids[j]) return false;
  if (std::memcmp(&a.labels[i], &b.labels[j], sizeof(float)) != 0) return false;
  if (num_dense > 0 && std::memcmp(a.dense.data() + i * num_dense, b.dense.data() + j * num_dense,
                                   static_cast<size_t>(num_dense) * sizeof(float)) != 0)
    return false;
  for (size_t s = 0; s < a.sparse.size(); ++s) {
    const auto& ca = a.sparse[s];
    const auto& cb = b.sparse[s];
    const int64_t na = ca.offsets[i + 1] - ca.offsets[i], nb = cb.offsets[j + 1] - cb.offsets[j];
    if (na != nb) return false;
    for (int64_t k = 0; k < na; ++k)
      if (ca.keys[ca.offsets[i] + k] != cb.keys[cb.offsets[j] + k]) return false;
  }
  return true;
}

}  // namespace lockstep::fuzz

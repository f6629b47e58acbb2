#pragma once
// Test helpers: a table's sparse gradient as a dense matrix, and a ParamSet's trainable indices.

#include <vector>

#include "lockstep/embedding/embedding_table.h"
#include "lockstep/nn/param_set.h"

namespace lockstep::test {

/// The table's current SparseGrad (host memory: CPU context) scattered into a dense
/// (rows × dim) matrix; zeros when the gradient is not ready.
template <class T>
std::vector<T> dense_table_grad(const embedding::EmbeddingTable<T>& table) {
  std::vector<T> dense(static_cast<size_t>(table.rows() * table.dim()), T(0));
  const auto& g = table.grad();
  if (!g.ready()) return dense;
  for (int64_t k = 0; k < *g.count(); ++k)
    for (int64_t d = 0; d < table.dim(); ++d)
      dense[g.ids()[k] * table.dim() + d] = g.rows()[k * table.dim() + d];
  return dense;
}

/// Flat indices of the trainable entries of `ps` (what a gradient check perturbs).
template <class T>
std::vector<int64_t> trainable_indices(const nn::ParamSet<T>& ps) {
  std::vector<int64_t> out;
  for (const auto& e : ps.entries())
    if (e.trainable)
      for (int64_t i = 0; i < e.numel(); ++i) out.push_back(e.offset + i);
  return out;
}

}  // namespace lockstep::test

#pragma once
// Internal: the cross-rank exchange of the embedding tables' sparse gradients.

#include <cstdint>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/embedding/embedding_table.h"

namespace lockstep::train {

/// Wire format: rank r sends one segment holding, table by table, its sparse gradient's ids
/// (u64 × rows) then its gradient rows (f32 × rows × grad_width); a dynamic table's ids are
/// feasign keys and its rows carry the keys' show/click counts (so every replica decides
/// admission and eviction from the same global counts); one all-gather carries every rank's
/// segment. Each table's gathered rows are then merged (equal ids summed in rank order), so every
/// replica ends the exchange with the identical merged SparseGrad in each table.
class SparseExchange {
 public:
  /// `rows[r * T + t]` = rows rank r holds for table t (from the step's summary, equal on every
  /// rank). Collective when any rank holds rows.
  void run(const Context& ctx, comm::Communicator& comm,
           const std::vector<embedding::EmbeddingTable<float>*>& tables,
           const std::vector<uint64_t>& rows);

 private:
  Tensor<uint8_t> send_, recv_;
  Tensor<uint64_t> gathered_ids_;
  Tensor<float> gathered_rows_;
};

}  // namespace lockstep::train

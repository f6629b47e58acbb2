#pragma once
// Internal: collectives over small host vectors (start-up checks, votes, evaluation), staged
// through the context's device memory so that every communicator backend can carry them.

#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/core/tensor.h"

namespace lockstep::train {

class HostCollectives {
 public:
  /// `comm` and `ctx` must outlive this object.
  HostCollectives(comm::Communicator& comm, const Context& ctx) : comm_(comm), ctx_(ctx) {}

  /// Sums host values over all ranks (F64: exact for integers below 2^53). Collective.
  std::vector<double> all_reduce_sum(std::vector<double> values);
  /// Every rank's floats (any counts) concatenated, rank 0's first. Collective.
  std::vector<float> all_gather(const std::vector<float>& mine);

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }

 private:
  comm::Communicator& comm_;
  const Context& ctx_;
  Tensor<double> scalars_;
};

}  // namespace lockstep::train

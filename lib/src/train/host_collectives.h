#pragma once
// Internal: collectives over small host vectors (start-up checks, votes, evaluation), staged
// through the context's device memory so that every communicator backend can carry them.

#include <cstdint>
#include <string>
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
  /// Every rank's floats (any counts) concatenated, rank 0's first; `counts` (when given)
  /// receives each rank's count. Collective.
  std::vector<float> all_gather(const std::vector<float>& mine,
                                std::vector<int64_t>* counts = nullptr);

  /// Every rank's `mine` (the same count k on every rank), exactly: element r·k + i is rank r's
  /// i-th value. (One-hot slots of 16-bit chunks keep 64-bit values exact in the F64 sum.)
  /// Collective; throws Error when a value arrives corrupted (ranks of different builds).
  std::vector<uint64_t> all_gather_u64(const std::vector<uint64_t>& mine);

  /// Every rank's text (its first `max_chars` bytes), element r rank r's. Collective.
  std::vector<std::string> all_gather_text(const std::string& mine, size_t max_chars);

  /// Ends a phase that can fail on some ranks only (checks of inputs, outputs, configuration):
  /// each rank passes its error message ("" when its part succeeded). A failing rank logs its
  /// message at once; then every rank throws the same JobError when any rank failed:
  ///   "<phase> failed on rank(s) 0, 2: rank 0: <message> | rank 2: <message>"
  /// Collective; returns normally on every rank when all succeeded.
  /// (`log_error` = false: the caller has logged it already.)
  void vote(const std::string& phase, const std::string& error, bool log_error = true);

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }

 private:
  comm::Communicator& comm_;
  const Context& ctx_;
  Tensor<double> scalars_;
};

}  // namespace lockstep::train

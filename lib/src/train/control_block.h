#pragma once
// Internal (not installed): the control block of the lockstep step: what every rank tells every other rank each step,
// carried by the same all-reduce as the dense gradients.
//
// Each rank owns one slot of `slot_size()` floats in a (ranks × slot) float array; every other
// slot is zero, so the SUM all-reduce leaves each rank's values intact in its slot (one-hot
// gather). Integers are split into 16-bit chunks, each exactly representable in a float, so
// counts and step numbers up to 2^64 survive the float all-reduce exactly; the loss sum is
// carried as a (hi, lo) float pair, precise to ~1e-14 relative.

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/train/step_summary.h"

namespace lockstep::train {

/// What one rank reports at one step.
struct RankReport {
  uint64_t step = 0;       // the step this rank is executing
  uint64_t n_samples = 0;  // samples in its batch (0 when its data is exhausted)
  bool has_next = false;   // whether it has another batch after this one
  uint16_t status = 0;     // 0 = ok; otherwise the rank failed this step (see kStatus*)
  bool stop_requested = false;  // a signal asked this rank to checkpoint and stop
  double loss_sum = 0.0;   // summed loss over its batch
  std::vector<uint64_t> sparse_rows;  // per embedding table: rows in its sparse gradient
};

/// 64-bit integers travel as four 16-bit chunks, each exact in a float or double sum of one-hot
/// slots. put writes chunks[0..3] (least significant first); get returns false when a chunk is
/// not an integer in [0, 65535] (corrupted data, or ranks with different layouts).
template <class F>
void put_u64_chunks(uint64_t v, F* chunks) {
  for (int i = 0; i < 4; ++i) chunks[i] = static_cast<F>((v >> (16 * i)) & 0xffffu);
}
template <class F>
bool get_u64_chunks(const F* chunks, uint64_t& v) {
  v = 0;
  for (int i = 0; i < 4; ++i) {
    const F c = chunks[i];
    if (!(c >= F(0) && c <= F(65535) && static_cast<F>(static_cast<uint64_t>(c)) == c)) return false;
    v |= static_cast<uint64_t>(c) << (16 * i);
  }
  return true;
}

/// Status codes a rank can report.
constexpr uint16_t kStatusOk = 0;
constexpr uint16_t kStatusComputeFailed = 1;     // forward/backward threw
constexpr uint16_t kStatusDataFailed = 2;        // reading the next batch threw
constexpr uint16_t kStatusCheckpointFailed = 3;  // writing a checkpoint threw
constexpr uint16_t kStatusStageFailed = 4;       // the batch could not be staged on the device
constexpr uint16_t kStatusDeviceInputFailed = 5;  // a CUDA kernel recorded invalid input
constexpr uint16_t kStatusInjected = 9;          // test fault injection
/// "forward/backward failed", ... for messages.
const char* status_name(uint16_t status);

class ControlBlock {
 public:
  ControlBlock(int ranks, int tables);

  int ranks() const { return ranks_; }
  /// Floats per rank slot.
  int64_t slot_size() const;
  /// Floats of the whole block (ranks × slot).
  int64_t size() const { return ranks_ * slot_size(); }

  /// Index in the block of rank `rank`'s loss (hi float; the lo float follows) and of the four
  /// chunks of its row count for table `table`: for values written on the device.
  int64_t loss_index(int rank) const;
  int64_t rows_index(int rank, int table) const;
  /// Index in the block of rank `rank`'s status (one float holding the code).
  int64_t status_index(int rank) const;

  /// Writes `report` into slot `rank` of `block` (size() floats; other slots untouched).
  void encode(const RankReport& report, int rank, float* block) const;
  /// Reads every slot of an all-reduced block. Throws Error when a slot is not a valid
  /// encoding (a chunk that is not an integer in [0, 65535]: corrupted data or mixed layouts).
  std::vector<RankReport> decode(const float* block) const;
  /// The same into `out`, reusing its memory (the step's steady state allocates nothing).
  void decode(const float* block, std::vector<RankReport>& out) const;

 private:
  int ranks_, tables_;
};

/// Checks the reports for the step `expected_step` and sums them. Throws the same Error on every
/// rank (the reports are identical everywhere) when a rank reported a failure status or a step
/// that differs from `expected_step`, naming the ranks and steps:
///   "lockstep divergence at step 12: rank 1 is at step 13 (ranks 0, 2 at step 12) ..."
///   "rank 2 failed at step 7 (reading the next batch failed; its log has the error) ..."
StepSummary summarize(const std::vector<RankReport>& reports, uint64_t expected_step);
/// The same into `out`, reusing its memory.
void summarize(const std::vector<RankReport>& reports, uint64_t expected_step, StepSummary& out);

}  // namespace lockstep::train

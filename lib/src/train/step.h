#pragma once
// Internal: one lockstep step, stage by stage (docs/lockstep.md).

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/core/pinned_buffer.h"
#include "lockstep/models/model.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/step_summary.h"
#include "train/control_block.h"
#include "train/fault_injection.h"
#include "train/gradient_buckets.h"
#include "train/host_collectives.h"
#include "train/sparse_exchange.h"
#include "train/state_sync.h"

namespace lockstep::train {

/// What a rank knows on the host before its step's collective.
struct StepInput {
  uint64_t step = 0;
  bool has_next = false;     // this rank has another batch after this one
  uint16_t status = kStatusOk;  // a failure found while reading ahead (kStatusDataFailed)
  std::string error;            // ... and its message
  bool stop_requested = false;
};

/// Every rank runs every step, with or without data:
///   stage_batch → forward_backward → write_control_slot → all_reduce → summarize
///   → exchange_sparse → apply.
/// Exactly one blocking collective (all_reduce) carries the control block, the state deltas and
/// the dense gradients not summed yet; the host reads device memory once per step, after it
/// (summarize). With several ranks and bucket_bytes > 0 the dense gradients are summed in
/// buckets started during the backward (GradientBuckets; the same bits).
class LockstepStep {
 public:
  /// `model`, `comm` and `ctx` must outlive the step. Every rank must pass the same bucket_bytes.
  LockstepStep(models::Model<float>& model, comm::Communicator& comm, Context& ctx,
               int64_t bucket_bytes = 0);
  /// Waits for ctx's stream first: its last step may still read the batches staged ahead,
  /// which are freed on a stream of their own.
  ~LockstepStep();
  LockstepStep(const LockstepStep&) = delete;
  LockstepStep& operator=(const LockstepStep&) = delete;

  /// Runs one step on this rank's `batch` (size 0 once its shard is exhausted) and returns what
  /// all ranks agreed on; the update has been applied when summary.samples > 0. Throws the same
  /// JobError on every rank when any rank failed (with the failing ranks' messages) or ran
  /// another step. A DeviceError (this rank's device is lost) propagates on this rank only.
  /// The summary stays valid until the next run(). Once the shapes repeat, a step allocates
  /// nothing on the host.
  /// `next`: this rank's batch for step input.step + 1 (nullptr: none), staged here while the
  /// device still runs this step (on CUDA on a stream of its own, so the copy overlaps the
  /// compute too); the next run() with that step number and a batch of that size starts on it.
  /// Staging is a pure function of the batch, so the bits are those of staging it then.
  const StepSummary& run(const data::Batch& batch, const StepInput& input,
                         const FaultInjection& fault, const data::Batch* next = nullptr);
  /// Forgets a batch staged ahead: the caller's next step will not be the one it was for.
  void drop_ahead() { ahead_ = nullptr; }
  /// Steps that started on a batch staged ahead (for tests and statistics).
  int64_t steps_staged_ahead() const { return steps_staged_ahead_; }
  /// The context batches are staged ahead on (its own stream on CUDA).
  const Context& ahead_context() const { return ahead_ctx_; }

  /// CUDA graphs for the forward and backward (LocalTrainer::set_graphs; on by default on
  /// CUDA). Never with buckets: a replayed backward does not tell them when gradients are
  /// written. Returns whether they are on.
  bool set_graphs(bool on);

  LocalTrainer<float>& local() { return local_; }
  const GradientBuckets& buckets() const { return buckets_; }

 private:
  void stage_batch(const data::Batch& batch, RankReport& report);
  void stage_ahead(const data::Batch* next, uint64_t step);
  void forward_backward(RankReport& report, const FaultInjection& fault);
  void fail(RankReport& report, uint16_t status, const std::string& what, const Error& e);
  void write_control_slot(const RankReport& report);
  void all_reduce();
  void summarize_step(uint64_t step);
  void exchange_sparse(const StepSummary& summary);
  void apply(const StepSummary& summary);

  models::Model<float>& model_;
  comm::Communicator& comm_;
  Context& ctx_;
  LocalTrainer<float> local_;
  std::vector<embedding::EmbeddingTable<float>*> tables_;
  ControlBlock control_;
  HostCollectives host_;  // the failing ranks' messages, when a step fails
  StateSync state_;
  SparseExchange sparse_;
  GradientBuckets buckets_;
  bool backward_completed_ = false;  // this rank ran a whole backward in the running step
  int rank_;
  int64_t grad_size_;
  std::vector<float> host_block_;    // the control block read back at the sync point
  PinnedBuffer control_upload_;      // this rank's slot, encoded for the upload (no stream wait)
  RankReport report_;                // this rank's report of the running step
  std::vector<RankReport> reports_;  // every rank's, after the collective
  StepSummary summary_;              // what they sum to
  models::DeviceBatch<float>* staged_ = nullptr;  // the running step's batch on the device
  // Batches staged one step ahead, alternately into two slots (a slot is refilled two steps
  // after its use, long after the device has finished reading it), on their own context.
  Context ahead_ctx_;
  models::DeviceBatch<float> ahead_slots_[2];
  int ahead_fill_ = 0;                           // the slot stage_ahead() fills next
  models::DeviceBatch<float>* ahead_ = nullptr;  // staged ahead, for step ahead_step_
  uint64_t ahead_step_ = 0;
  int64_t ahead_size_ = 0;
  int64_t steps_staged_ahead_ = 0;
  const float* loss_ = nullptr;  // its summed loss on the device (null: no loss this step)
  std::string error_;            // why this rank failed the running step ("" when it did not)
};

}  // namespace lockstep::train

#include "train/step.h"

#include <algorithm>

#include "kernels/control.h"
#include "lockstep/core/logging.h"
#include "lockstep/core/profile.h"

namespace lockstep::train {

LockstepStep::LockstepStep(models::Model<float>& model, comm::Communicator& comm, Context& ctx,
                           int64_t bucket_bytes)
    : model_(model),
      comm_(comm),
      ctx_(ctx),
      local_(model, ctx),
      tables_(model.tables()),
      control_(comm.size(), static_cast<int>(model.tables().size())),
      host_(comm, ctx),
      state_(ctx, model.dense_params(), comm.size()),
      buckets_(model.dense_params(), comm, comm.size() > 1 ? bucket_bytes : 0),
      rank_(comm.rank()),
      grad_size_(model.dense_params().size()),
      ahead_ctx_(ctx.device(), ctx.options()) {
  model.dense_params().reserve_grad_tail(ctx, control_.size());
  host_block_.assign(control_.size(), 0.0f);
  set_graphs(local_.graphs());
}

LockstepStep::~LockstepStep() {
  // Unwinding mid-step may leave the stream waiting on collectives a peer will never join.
  comm_.settle_enqueued();
  try {
    ctx_.synchronize();
  } catch (const Error&) {
    // The stream failed (the device is lost): nothing of it runs any more.
  }
}

// A replayed graph does not call the layers' GradListener during the backward: buckets and
// graphs exclude each other (docs/performance.md, "CUDA graphs").
bool LockstepStep::set_graphs(bool on) {
  local_.set_graphs(on && buckets_.buckets().empty());
  for (auto& slot : ahead_slots_) slot.set_pad_ids(local_.graphs());
  return local_.graphs();
}

const StepSummary& LockstepStep::run(const data::Batch& batch, const StepInput& input,
                                     const FaultInjection& fault, const data::Batch* next) {
  RankReport& report = report_;
  report.step = input.step;
  report.n_samples = static_cast<uint64_t>(batch.size);
  report.has_next = input.has_next;
  report.status = input.status;
  report.stop_requested = input.stop_requested;
  report.sparse_rows.assign(tables_.size(), 0);  // written on the device (write_control_slot)
  error_ = input.error;
  comm_.set_step(static_cast<int64_t>(input.step));

  // What stage_ahead() enqueues later in this step runs after the previous steps' work, their
  // optimizer included (the slot it fills was last read then), but alongside this step's.
  if (next) ahead_ctx_.wait_for(ctx_);
  stage_batch(batch, report);
  forward_backward(report, fault);
  fault.apply(report, rank_, input.step);
  write_control_slot(report);
  stage_ahead(next, input.step + 1);
  all_reduce();
  summarize_step(input.step);
  exchange_sparse(summary_);
  apply(summary_);
  return summary_;
}

// 1. The batch this rank trains on (empty once its shard is exhausted) goes to the device, once.
//    A batch the model cannot take becomes this rank's status (every rank stops at this step).
void LockstepStep::stage_batch(const data::Batch& batch, RankReport& report) {
  staged_ = nullptr;
  models::DeviceBatch<float>* ahead = ahead_;
  ahead_ = nullptr;
  if (batch.size == 0 || report.status != kStatusOk) return;
  if (ahead && ahead_step_ == report.step && ahead_size_ == batch.size) {
    ctx_.wait_for(ahead_ctx_);  // the copy (and key hashing) enqueued there
    staged_ = ahead;
    ++steps_staged_ahead_;
    return;
  }
  try {
    staged_ = &local_.stage(batch);
  } catch (const DeviceError&) {
    throw;  // this rank cannot take part in the collective: the driver aborts the job
  } catch (const Error& e) {
    fail(report, kStatusStageFailed, "staging the batch", e);
  }
}

// 3b. The next batch, staged while the device runs this step's forward and backward. A batch
//     that cannot be staged is left to its own step, which stages it again and fails there.
void LockstepStep::stage_ahead(const data::Batch* next, uint64_t step) {
  if (!next || next->size == 0) return;
  const ProfilePhase phase(ctx_, "stage ahead (next batch to device)");
  models::DeviceBatch<float>& slot = ahead_slots_[ahead_fill_];
  try {
    model_.stage(ahead_ctx_, *next, slot);
  } catch (const DeviceError&) {
    throw;
  } catch (const Error&) {
    return;
  }
  ahead_ = &slot;
  ahead_step_ = step;
  ahead_size_ = next->size;
  ahead_fill_ ^= 1;
}

// A failure of this rank in this step: logged at once, reported through the control block, and
// its message sent to every rank after the collective (summarize_step).
void LockstepStep::fail(RankReport& report, uint16_t status, const std::string& what,
                        const Error& e) {
  error_ = fmt::format("{} failed: {}", what, e.what());
  // At once, for the other ranks' logs to have it before the collective; alone, the step's
  // JobError says it (once).
  if (comm_.size() > 1) log().error("rank {}: step {}: {}", rank_, report.step, error_);
  report.status = status;
}

// 2. Local forward and backward: summed dense gradients in the ParamSet, sparse ones in the
//    tables, the summed loss on the device; buckets of finished dense gradients start their sum
//    during the backward. A failure becomes this rank's status, so that every rank learns of it
//    from the collective instead of waiting for this one.
void LockstepStep::forward_backward(RankReport& report, const FaultInjection& fault) {
  state_.snapshot(ctx_);
  loss_ = nullptr;
  backward_completed_ = false;
  buckets_.begin_step();
  const auto no_gradients = [&] {
    buckets_.zero_unstarted(ctx_);  // what started (if the backward failed) must not change
    for (auto* t : tables_) t->grad().clear();
  };
  try {
    fault.raise_in_compute(rank_, report.step);
    if (staged_ && report.status == kStatusOk) {
      loss_ = local_.compute_gradients(*staged_);
      backward_completed_ = true;
    } else {
      no_gradients();
    }
  } catch (const DeviceError&) {
    throw;  // this rank cannot take part in the collective: the driver aborts the job
  } catch (const Error& e) {
    fail(report, kStatusComputeFailed, "forward/backward", e);
    loss_ = nullptr;
    no_gradients();  // a DeviceError here (the device is lost) propagates
  }
  // Non-trainable state travels as this rank's sample-weighted change (StateSync).
  state_.encode_delta(ctx_, static_cast<int64_t>(report.n_samples));
}

// 3. This rank's slot of the control block, in the tail of the gradient buffer: host facts
//    uploaded; the loss and each table's sparse row count written on the device (no host read).
//    The float loss travels as the slot's hi part (its lo part stays 0). Invalid input that a
//    CUDA kernel recorded this step (an id past its table, ...) turns the status to failed on
//    the device, so every rank stops at this step; this rank throws the kernel's message when
//    it reads the block (to_host reads the device error record with it).
void LockstepStep::write_control_slot(const RankReport& report) {
  // Encoded in page-locked memory: a copy from pageable memory would wait for the stream, i.e.
  // for this step's forward and backward, before the next batch is staged ahead. The last
  // upload has long been read (the previous step's sync point came after it).
  const auto n = static_cast<size_t>(control_.size());
  control_upload_.reserve(ctx_, n * sizeof(float));
  auto* block = static_cast<float*>(control_upload_.data());
  std::fill(block, block + n, 0.0f);
  control_.encode(report, rank_, block);
  float* tail = model_.dense_params().grad_tail();
  control_upload_.copy_to_device(ctx_, tail, n * sizeof(float));
  if (report.status != kStatusOk) return;  // a failed rank reports no loss and no rows
  kernels::flag_device_error<float>(ctx_, static_cast<float>(kStatusDeviceInputFailed),
                                    tail + control_.status_index(rank_));
  if (loss_)
    copy_bytes(ctx_, tail + control_.loss_index(rank_), ctx_.device(), loss_, ctx_.device(),
               sizeof(float));
  for (size_t t = 0; t < tables_.size(); ++t)
    if (tables_[t]->grad().ready())
      kernels::encode_count_chunks<float>(ctx_, tables_[t]->grad().count(),
                                          tail + control_.rows_index(rank_, static_cast<int>(t)));
}

// 4. THE collective: the control block, state deltas and the dense gradients no bucket holds
//    in one blocking all-reduce, after the buckets not started yet (every rank starts all of
//    them, in the same order, whatever its backward did).
void LockstepStep::all_reduce() {
  const ProfilePhase phase(ctx_, "all-reduce");
  buckets_.flush(ctx_, backward_completed_);
  buckets_.wait(ctx_);
  const int64_t covered = buckets_.covered();
  comm_.all_reduce_sum(ctx_, model_.dense_params().grads() + covered,
                       grad_size_ + control_.size() - covered, comm::DataType::F32);
}

// 5. The step's one host read: every rank's slot, checked and summed (the same Error on every
//    rank when one failed or diverged).
void LockstepStep::summarize_step(uint64_t step) {
  const ProfilePhase phase(ctx_, "sync point (the host read)");
  host_block_.assign(control_.size(), 0.0f);
  ctx_.count_host_read();  // the step's one host read, as to_host() would count it
  try {
    ctx_.copy_to_host(host_block_.data(), model_.dense_params().grad_tail(),
                      host_block_.size() * sizeof(float));
  } catch (const DeviceError&) {
    throw;
  } catch (const Error& e) {
    // Invalid input a CUDA kernel recorded this step (the copy has arrived; write_control_slot
    // marked this rank's status on the device): its message goes to every rank below. Any
    // other failure of the read leaves this rank unable to go on: it propagates.
    if (host_block_[control_.status_index(rank_)] != static_cast<float>(kStatusDeviceInputFailed))
      throw;
    error_ = fmt::format("a CUDA kernel found invalid input: {}", e.what());
    if (comm_.size() > 1) log().error("rank {}: step {}: {}", rank_, step, error_);
  }
  control_.decode(host_block_.data(), reports_);
  const auto& reports = reports_;
  // Every rank sees the same statuses, so all of them take this branch together: the failing
  // ranks' messages travel, and every rank raises them.
  if (std::any_of(reports.begin(), reports.end(),
                  [](const RankReport& r) { return r.status != kStatusOk; }))
    host_.vote(fmt::format("lockstep step {}", step), error_, /*log_error=*/false);
  summarize(reports, step, summary_);
}

// 6. Every rank's sparse gradients merged identically on every replica.
void LockstepStep::exchange_sparse(const StepSummary& summary) {
  const ProfilePhase phase(ctx_, "sparse exchange");
  if (comm_.size() > 1) sparse_.run(ctx_, comm_, tables_, summary.sparse_rows);
}

// 7. The identical update on every rank: gradient / N, state mean; nothing when N = 0.
void LockstepStep::apply(const StepSummary& summary) {
  if (summary.samples == 0) return;
  const ProfilePhase phase(ctx_, "optimizer");
  const float inv = 1.0f / static_cast<float>(summary.samples);
  state_.apply(ctx_, inv);
  model_.apply_gradients(ctx_, inv);
}

}  // namespace lockstep::train

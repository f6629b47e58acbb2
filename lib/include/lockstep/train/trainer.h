#pragma once
// The lockstep trainer: synchronous data-parallel training where every rank runs every step,
// with or without data, and exactly one blocking collective per step carries the dense
// gradients and the control block (docs/lockstep.md).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/models/model.h"
#include "lockstep/train/batch_source.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/evaluation.h"
#include "lockstep/train/step_summary.h"

namespace lockstep::train {

struct TrainerConfig {
  int64_t epochs = 1;
  /// Rank 0 prints a progress line every `log_every` steps (0: only at the end of each epoch).
  int64_t log_every = 100;
  /// Steps per epoch when known (for the ETA in progress lines; 0 = unknown).
  int64_t steps_per_epoch = 0;
  /// Rank 0 appends one JSON line per progress line / evaluation here ("" = none).
  std::string metrics_path;
  /// Checkpoints go here ("" = none): every `checkpoint_every` steps (0 = never periodic) and
  /// when training ends or stops on SIGTERM/SIGINT.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int keep_checkpoints = 2;
  /// Base/delta export of the dynamic tables (lockstep/train/sparse_model.h) into this directory
  /// ("" = none): a base at the end of every epoch (before its shrink), a delta every
  /// `sparse_delta_every` steps (0 = none). Rank 0 writes; every rank then resets the delta
  /// scores of what was saved.
  std::string sparse_export_dir;
  int64_t sparse_delta_every = 0;
  /// Time where the training steps' time goes (lockstep/core/profile.h: the step's phases and
  /// kernels; evaluation is not counted) and have rank 0 log the table at the end of fit(). On
  /// CUDA this synchronises around every kernel: for finding where time goes, not for speed.
  bool profile = false;
  /// With several ranks, the dense gradients are summed in buckets of about this many MiB,
  /// each started while the backward computes the rest (0: one all-reduce after the backward).
  /// The sums are bitwise the same either way (docs/lockstep.md, "Buckets"). Every rank must
  /// use the same value.
  double all_reduce_bucket_mb = 1.0;
  /// Stage each step's next batch while the step computes (on CUDA on a stream of its own, so
  /// the copy to the device and the key hashing overlap the forward and backward). Off: every
  /// step stages its own batch first (for measuring what the overlap gains). Same bits either way.
  bool stage_ahead = true;
  /// Whether the end of an epoch is a boundary (below). A driver that marks boundaries itself
  /// (lockstep-train --follow: day markers in the data) sets it false and calls boundary().
  bool epoch_boundaries = true;
  /// Resume from the newest checkpoint in checkpoint_dir; fit() throws (on every rank) when
  /// there is none, unless resume_or_start, which then starts from the beginning. Only the first
  /// fit() of a Trainer resumes: a later one goes on from the model as the earlier left it.
  bool resume = false;
  bool resume_or_start = false;
  /// Install SIGTERM/SIGINT handlers during fit() (off by default: the library installs no
  /// handler unless asked): the next step stops every rank, a checkpoint is written (when
  /// checkpoint_dir is set) and fit() returns.
  bool handle_signals = false;
  /// The failure policy (lockstep/train/failure.h). Errors every rank raises together (JobError:
  /// a vote, a failed step) are always thrown. An exception that leaves a collective call on this
  /// rank only (CommError, DeviceError, an internal error) is logged at once and then thrown
  /// (false, the default: the driver must end the job, e.g. with abort_job()) or ends the whole
  /// job at once with abort_job() (true; what lockstep-train does). The library never exits on
  /// its own.
  bool abort_on_error = false;
  /// Run configuration text compared across ranks at start-up (with the model layout).
  std::string run_config;

  // ---- Model selection on fit()'s evaluation source (docs/training.md, "Model selection").
  /// What that source is, in logs and metrics lines ("valid"; "test" when a driver only
  /// monitors test data, without best_dir and early stopping).
  std::string eval_split = "valid";
  /// Evaluate it every `eval_every` steps too (0: after each epoch only).
  int64_t eval_every = 0;
  /// The selection metric, of the served output: "auc" (higher is better) or "logloss".
  std::string select_metric = "auc";
  /// Stop after this many evaluations in a row without improving on the best (0: never).
  int64_t early_stop_patience = 0;
  /// Keep the best evaluation's model here ("" = not kept): a complete model (a checkpoint
  /// directory with model_files, train/saved_model.h), replaced atomically by rank 0 at each
  /// improvement. Every rank reads it back at the end when restore_best: with several ranks it
  /// must be on a file system they share, like checkpoint_dir.
  std::string best_dir;
  /// Without best_dir: keep the best evaluation's model state (parameters, tables, optimizer) in
  /// host memory on every rank instead, nothing written (it does not survive a restart).
  bool keep_best_in_memory = false;
  /// At the end of a fit() that kept a best model, load it into the model (so that what follows,
  /// a test evaluation or a save, uses the best parameters).
  bool restore_best = true;
  /// Text files written into every checkpoint and best_dir ("model.toml", "schema.toml": what
  /// rebuilds the model, train/saved_model.h).
  CheckpointExtras model_files;
};

/// What a callback sees after each step (on every rank).
struct StepInfo {
  uint64_t step = 0;            // the step just completed (0-based, over all epochs)
  int64_t epoch = 0;
  const data::Batch* batch = nullptr;  // this rank's batch (size 0 when it had none)
  StepSummary summary;          // what all ranks agreed on
  bool updated = false;         // an optimizer update was applied (global samples > 0)
};

struct FitResult {
  uint64_t steps = 0;    // lockstep steps run by this fit()
  uint64_t updates = 0;  // of which applied an update
  int64_t samples = 0;   // global samples trained on
  double loss_sum = 0;   // global summed loss
  double seconds = 0;        // wall time of fit()
  double train_seconds = 0;  // of which stepping (without evaluation and checkpoints)
  double data_wait_seconds = 0;  // of which this rank waited for its next batch (BatchSource::next)
  uint64_t steps_staged_ahead = 0;  // steps that began on a batch staged during the step before
  bool stopped = false;      // ended early on a signal
  /// Resumed from the checkpoint of a run that had already trained all config.epochs epochs:
  /// nothing was trained or written (last_eval still evaluates the held-out data when given).
  bool already_finished = false;
  std::string last_checkpoint;
  EvalResult last_eval;  // the last evaluation, when an evaluation source was given
  /// Model selection (with an evaluation source): the best evaluation (only its auc and logloss
  /// when it happened before a resume), its step and 1-based epoch, whether training stopped
  /// early, and whether best_dir was loaded back at the end.
  EvalResult best_eval;
  uint64_t best_step = 0;
  int64_t best_epoch = 0;
  bool early_stopped = false;
  bool restored_best = false;
};

class Trainer {
 public:
  /// `model`, `comm` and `ctx` must outlive the trainer. Checks at construction that every rank
  /// has the same parameter layout and run configuration (one collective): a mismatch throws the
  /// same Error on every rank, naming what differs.
  Trainer(models::Model<float>& model, comm::Communicator& comm, Context& ctx,
          TrainerConfig config);
  ~Trainer();

  /// Trains config.epochs epochs over `train` (this rank's shard); evaluates on `eval` (this
  /// rank's shard of the held-out data) after each epoch when given. Collective. After a fit()
  /// that stopped on a signal, the next fit() continues where it stopped; after a completed one
  /// it trains config.epochs epochs again (step counters keep counting).
  FitResult fit(BatchSource& train, BatchSource* eval = nullptr);

  /// Every output's metrics (AUC exact, log loss, calibration, normalized entropy) over every
  /// rank's shard of `data` (inference mode). With a `split` name ("test") rank 0 also logs them
  /// and writes an "eval" metrics line (at the best model's step and epoch when fit() restored
  /// it). Collective.
  EvalResult evaluate(BatchSource& data, const std::string& split = "");

  /// Writes a checkpoint now (rank 0 writes; collective). Returns its path ("" on other ranks).
  std::string save_checkpoint();

  /// A boundary of the feasign store (docs/feasign_store.md): with sparse_export_dir a base
  /// export, then the dynamic tables' shrink (those with shrink_each_epoch) and their report.
  /// fit() runs one at every epoch's end unless epoch_boundaries is false. Collective.
  void boundary();
  /// With sparse_export_dir: a base export now (no shrink). Collective.
  void save_sparse_base();

  /// Runs `fn` on this rank and then votes (lockstep/train/failure.h, agree()): a lockstep::Error
  /// thrown by `fn` on any rank becomes the same JobError on every rank, e.g. "export failed on
  /// rank(s) 0: rank 0: …". For a driver's own work that can fail on some ranks only (rank 0
  /// writing an export, each rank reading its files). Collective.
  void vote(const std::string& phase, const std::function<void()>& fn);

  /// A text file written into every later checkpoint beside model_files (a name of
  /// CheckpointExtras: "follow.txt" for a driver's own position in its data), so that it is
  /// exactly as current as the model state it is saved with. Throws Error for another name.
  void set_checkpoint_extra(const std::string& name, std::string text);

  void on_step(std::function<void(const StepInfo&)> callback);

  /// XXH64 of this rank's whole model state (dense parameters and state, dense optimizer state,
  /// every table's weights and optimizer state), gathered from every rank: element r is rank r's.
  /// Equal values mean bitwise-identical replicas. Collective.
  std::vector<uint64_t> replica_hashes();

  /// Steps run and updates applied so far (over every fit(), continued across a resume).
  uint64_t step() const;
  uint64_t updates() const;
  /// The hash of model layout and run configuration compared across ranks.
  uint64_t config_hash() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::train

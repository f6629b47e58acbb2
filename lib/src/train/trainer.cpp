#include "lockstep/train/trainer.h"

#include <cmath>

#include "lockstep/core/atomic_file.h"
#include "lockstep/core/logging.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/failure.h"
#include "lockstep/train/metrics.h"
#include "train/consistency.h"
#include "train/fault_injection.h"
#include "train/host_collectives.h"
#include "train/progress.h"
#include "train/signals.h"
#include "core/scoped_seconds.h"
#include "train/step.h"

namespace lockstep::train {

namespace {

/// One rank's batches with one batch of read-ahead, so that each step knows whether this rank
/// has another. A failure while reading becomes a status reported at the next step.
class Lookahead {
 public:
  Lookahead(BatchSource& source, int rank) : source_(source), rank_(rank) {
    has_cur_ = read(cur_);
    has_nxt_ = has_cur_ && read(nxt_);
  }
  const data::Batch& current() const { return has_cur_ ? cur_ : empty_; }
  bool has_next() const { return has_nxt_; }
  uint16_t status() const { return status_; }
  const std::string& error() const { return error_; }
  /// Seconds spent in BatchSource::next() so far: waiting for data.
  double wait_seconds() const { return wait_seconds_; }
  void advance() {
    std::swap(cur_, nxt_);
    has_cur_ = has_nxt_;
    has_nxt_ = has_cur_ && read(nxt_);
  }

 private:
  bool read(data::Batch& b) {
    const ScopedSeconds waiting(wait_seconds_);
    try {
      return source_.next(b);
    } catch (const DeviceError&) {
      throw;
    } catch (const Error& e) {
      error_ = fmt::format("reading the next batch failed: {}", e.what());
      log().error("rank {}: {}", rank_, error_);
      status_ = kStatusDataFailed;
      return false;
    }
  }

  BatchSource& source_;
  int rank_;
  data::Batch cur_, nxt_, empty_;
  bool has_cur_ = false, has_nxt_ = false;
  uint16_t status_ = kStatusOk;
  std::string error_;
  double wait_seconds_ = 0;
};

/// The trainer's own settings that every rank must share, as "key=value" lines (compared at
/// start-up; not part of the configuration hash a checkpoint is checked against).
std::string settings_text(const TrainerConfig& c) {
  return fmt::format("epochs={}\nresume={}\nresume_or_start={}\ncheckpoint_dir={}\n"
                     "checkpoint_every={}\nkeep_checkpoints={}\n",
                     c.epochs, c.resume, c.resume_or_start, c.checkpoint_dir, c.checkpoint_every,
                     c.keep_checkpoints);
}

}  // namespace

struct Trainer::Impl {
  models::Model<float>& model;
  comm::Communicator& comm;
  Context& ctx;
  TrainerConfig config;
  HostCollectives host;
  LockstepStep step;
  Progress progress;
  FaultInjection fault = testing::current_fault();
  std::vector<std::function<void(const StepInfo&)>> callbacks;
  EvalResult last_eval{0, NAN, NAN};
  uint64_t step_no = 0, updates = 0, config_hash = 0;
  uint64_t saved_at = UINT64_MAX;  // step of the last checkpoint the running fit() wrote
  int64_t epoch = 0, step_in_epoch = 0;
  double side_seconds = 0;  // evaluation and checkpoints during the running fit()

  Impl(models::Model<float>& m, comm::Communicator& c, Context& x, TrainerConfig cfg)
      : model(m),
        comm(c),
        ctx(x),
        config(std::move(cfg)),
        host(c, x),
        step(m, c, x),
        progress(config, c.rank()) {}

  /// Runs a collective part of the trainer's API. An exception that every rank raised together
  /// (JobError) propagates; any other leaves this rank's peers waiting: it is logged at once and,
  /// with config.abort_on_error, ends the job (abort_job), else propagates.
  template <class F>
  auto collective(F&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const std::exception& e) {
      if (raised_on_every_rank(e)) throw;
      if (config.abort_on_error) abort_job(comm, e);
      log().error("rank {}: {}", comm.rank(), e.what());
      throw;
    }
  }

  template <class F>
  void timed(F&& fn) {  // work that is not stepping (evaluation, checkpoints)
    const double s0 = progress.elapsed();
    fn();
    side_seconds += progress.elapsed() - s0;
  }

  bool resume();
  void check_same_start(const std::string& start);
  std::string start_point;  // where resume() found this rank starts
  bool train_epoch(BatchSource& train, FitResult& result);
  std::string save_checkpoint();
  EvalResult evaluate(BatchSource& data);
};

Trainer::Trainer(models::Model<float>& model, comm::Communicator& comm, Context& ctx,
                 TrainerConfig config)
    : impl_(std::make_unique<Impl>(model, comm, ctx, std::move(config))) {
  Impl& m = *impl_;
  const TrainerConfig& c = m.config;
  comm.set_step(0);  // start-up deadlines
  m.collective([&] {
    // Checks that may fail on one rank only end in a vote, so that every rank raises the same
    // error instead of the failing one leaving its peers in the next collective.
    agree(comm, ctx, "start-up", [&] {
      check_range("epochs", c.epochs, int64_t{0}, int64_t{1} << 30);
      check_range("log_every", c.log_every, int64_t{0}, int64_t{1} << 40);
      check_range("checkpoint_every", c.checkpoint_every, int64_t{0}, int64_t{1} << 40);
      check_range("keep_checkpoints", int64_t{c.keep_checkpoints}, 1, 1 << 20);
      LOCKSTEP_CHECK(!(c.resume || c.resume_or_start) || !c.checkpoint_dir.empty(),
                     "--resume needs --checkpoint-dir");
      if (comm.rank() == 0) {  // rank 0 writes the outputs: they must be writable before step 1
        m.progress.open_metrics();
        if (!c.checkpoint_dir.empty()) {
          probe_writable_directory(c.checkpoint_dir, "the checkpoint directory", /*create=*/true);
          remove_stale_checkpoint_temporaries(c.checkpoint_dir);
        }
      }
    });
    m.config_hash = check_startup_consistency(m.host, ctx, model, c.run_config, settings_text(c));
  });
}

Trainer::~Trainer() = default;

uint64_t Trainer::step() const { return impl_->step_no; }
uint64_t Trainer::updates() const { return impl_->updates; }
uint64_t Trainer::config_hash() const { return impl_->config_hash; }

void Trainer::on_step(std::function<void(const StepInfo&)> callback) {
  impl_->callbacks.push_back(std::move(callback));
}

std::string Trainer::save_checkpoint() {
  return impl_->collective([&] { return impl_->save_checkpoint(); });
}

std::vector<uint64_t> Trainer::replica_hashes() {
  return impl_->collective(
      [&] { return impl_->host.all_gather_u64({model_state_hash(impl_->ctx, impl_->model)}); });
}

EvalResult Trainer::evaluate(BatchSource& data) {
  return impl_->collective([&] { return impl_->evaluate(data); });
}

void Trainer::vote(const std::string& phase, const std::function<void()>& fn) {
  impl_->collective([&] { agree(impl_->comm, impl_->ctx, phase, fn); });
}

FitResult Trainer::fit(BatchSource& train, BatchSource* eval) {
  Impl& m = *impl_;
  FitResult result;
  SignalGuard signals(m.config.handle_signals);
  m.progress.start();
  m.side_seconds = 0;
  m.saved_at = UINT64_MAX;
  m.collective([&] {
    bool finished = false;
    if (m.config.resume || m.config.resume_or_start) {  // the same verdict on every rank
      agree(m.comm, m.ctx, "resuming", [&] { finished = m.resume(); });
      m.check_same_start(m.start_point);
    }
    if (finished) {  // a finished run: evaluate only, change nothing
      result.already_finished = true;
      if (eval) result.last_eval = m.evaluate(*eval);
      m.epoch = m.step_in_epoch = 0;
      return;
    }
    for (; m.epoch < m.config.epochs; ++m.epoch, m.step_in_epoch = 0) {
      const int64_t samples_before = result.samples;
      if (!m.train_epoch(train, result)) {
        result.stopped = true;
        break;
      }
      m.progress.on_epoch_end(m.epoch, m.step_no, result.samples - samples_before);
      // Each rank reports what its data source let pass (skipped bad records): no collective.
      if (const std::string report = train.epoch_report(); !report.empty())
        log().warn("epoch {}: rank {}: {}", m.epoch + 1, m.comm.rank(), report);
      if (eval) {
        m.timed([&] { result.last_eval = m.evaluate(*eval); });
        m.progress.on_eval(m.epoch, m.step_no, result.last_eval);
      }
    }
    if (!result.stopped) {
      if (!m.config.checkpoint_dir.empty() && m.saved_at != m.step_no)
        m.timed([&] { result.last_checkpoint = m.save_checkpoint(); });
      m.epoch = 0;  // completed: a further fit() trains config.epochs more epochs
      m.step_in_epoch = 0;
    }
  });
  result.seconds = m.progress.elapsed();
  result.train_seconds = result.seconds - m.side_seconds;
  return result;
}

/// Trains the rest of the current epoch. Returns false when a stop signal ended training (a
/// checkpoint written when a directory is set).
bool Trainer::Impl::train_epoch(BatchSource& train, FitResult& result) {
  train.start_epoch(epoch);
  if (step_in_epoch > 0) train.skip(step_in_epoch);
  Lookahead data(train, comm.rank());
  while (true) {
    const StepInput input{step_no, data.has_next(), data.status(), data.error(),
                          config.handle_signals && stop_signal_pending()};
    const StepSummary summary = step.run(data.current(), input, fault);
    const bool updated = summary.samples > 0;
    updates += updated;
    ++step_no;
    ++step_in_epoch;
    ++result.steps;
    result.updates += updated;
    result.samples += static_cast<int64_t>(summary.samples);
    result.loss_sum += summary.loss_sum;
    const StepInfo info{step_no - 1, epoch, &data.current(), summary, updated};
    for (auto& cb : callbacks) cb(info);
    progress.on_step(step_no, epoch, summary, result.steps, last_eval,
                     result.data_wait_seconds + data.wait_seconds());
    if (summary.stop_requested) {
      result.data_wait_seconds += data.wait_seconds();
      if (comm.rank() == 0) log().warn("stop requested by a signal: stopping at step {}", step_no);
      if (!config.checkpoint_dir.empty()) result.last_checkpoint = save_checkpoint();
      return false;
    }
    if (!config.checkpoint_dir.empty() && config.checkpoint_every > 0 &&
        step_no % config.checkpoint_every == 0) {
      timed([&] { result.last_checkpoint = save_checkpoint(); });
      saved_at = step_no;
    }
    if (!summary.any_next) {
      result.data_wait_seconds += data.wait_seconds();
      return true;
    }
    data.advance();
  }
}

/// Loads the newest checkpoint of config.checkpoint_dir when there is one. Returns true when it
/// is the end of a run that trained all config.epochs epochs.
bool Trainer::Impl::resume() {
  const std::string path = latest_checkpoint(config.checkpoint_dir);
  if (path.empty()) {
    LOCKSTEP_CHECK(config.resume_or_start,
                   "--resume: there is no checkpoint in '{}' to resume from (use "
                   "--resume-or-start to start from the beginning when there is none)",
                   config.checkpoint_dir);
    start_point = fmt::format("starts from the beginning (no checkpoint in {})",
                              config.checkpoint_dir);
    if (comm.rank() == 0)
      log().info("no checkpoint in {} yet: starting from the beginning", config.checkpoint_dir);
    return false;
  }
  const CheckpointMeta meta = read_checkpoint(path, model, ctx, config_hash);
  LOCKSTEP_CHECK(meta.ranks == comm.size(),
                 "{}: written by a run with {} ranks; resume it with {} ranks (each rank's "
                 "data position depends on the rank count)",
                 path, meta.ranks, comm.size());
  step_no = meta.step;
  updates = meta.updates;
  epoch = meta.epoch;
  step_in_epoch = meta.step_in_epoch;
  ctx.set_random_offset(meta.random_offset);
  start_point = fmt::format("resumes from {} (step {})", path, step_no);
  const bool finished = epoch >= config.epochs;
  if (comm.rank() == 0) {
    if (finished)
      log().info("{}: this run already finished (step {}, all {} epoch(s) trained): nothing to "
                 "train, nothing written",
                 path, step_no, config.epochs);
    else
      log().info("resumed from {} (step {}, epoch {}, batch {} of the epoch)", path, step_no,
                 epoch, step_in_epoch);
  }
  return finished;
}

/// Ranks resuming from different checkpoints (directories not shared, a LATEST written in
/// between) or one resuming and one not would train different models: every rank compares where
/// it starts and all raise the same JobError naming the difference. Collective.
void Trainer::Impl::check_same_start(const std::string& start) {
  const auto starts = host.all_gather_text(start, 4096);
  std::string differ;
  for (int r = 1; r < comm.size(); ++r)
    if (starts[r] != starts[0]) differ += fmt::format("; rank {} {}", r, starts[r]);
  if (!differ.empty())
    throw JobError(fmt::format("ranks start from different points: rank 0 {}{} (give every rank "
                               "the same checkpoint directory, on a shared file system)",
                               starts[0], differ));
}

std::string Trainer::Impl::save_checkpoint() {
  LOCKSTEP_CHECK(!config.checkpoint_dir.empty(), "save_checkpoint: no checkpoint directory set");
  std::string path, error;
  if (comm.rank() == 0) {
    CheckpointMeta meta;
    meta.step = step_no;
    meta.updates = updates;
    meta.epoch = epoch;
    meta.step_in_epoch = step_in_epoch;
    meta.random_offset = ctx.random_offset();
    meta.ranks = comm.size();
    meta.config_hash = config_hash;
    meta.model = model.name();
    try {
      path = write_checkpoint(config.checkpoint_dir, meta, model, ctx, config.keep_checkpoints);
      log().info("checkpoint written: {}", path);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  // Every rank learns whether rank 0 succeeded, so that all stop together on a failure.
  host.vote(fmt::format("writing the checkpoint at step {}", step_no), error);
  return path;
}

EvalResult Trainer::Impl::evaluate(BatchSource& data) {
  std::vector<float> probs, labels;
  // A bad record in the part of the data one rank reads fails that rank only: a vote.
  agree(comm, ctx, "evaluation", [&] {
    data.start_epoch(0);
    data::Batch batch;
    while (data.next(batch)) {
      const auto p = step.local().predict(batch);
      probs.insert(probs.end(), p.begin(), p.end());
      labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
    }
  });
  const auto all_probs = host.all_gather(probs);
  const auto all_labels = host.all_gather(labels);
  EvalResult r;
  r.samples = static_cast<int64_t>(all_probs.size());
  r.auc = r.samples ? roc_auc(all_probs, all_labels) : NAN;
  r.logloss = r.samples ? mean_log_loss_from_probs(all_probs, all_labels) : NAN;
  last_eval = r;
  return r;
}

}  // namespace lockstep::train

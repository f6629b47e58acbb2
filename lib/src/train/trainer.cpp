#include "lockstep/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/scoped_seconds.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/logging.h"
#include "lockstep/core/profile.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/failure.h"
#include "lockstep/train/metrics.h"
#include "lockstep/train/sparse_model.h"
#include "train/checkpoint_manifest.h"
#include "train/consistency.h"
#include "train/fault_injection.h"
#include "train/host_collectives.h"
#include "train/model_state.h"
#include "train/progress.h"
#include "train/signals.h"
#include "train/step.h"

namespace lockstep::train {

namespace {

/// One rank's batches with one batch of read-ahead, so that each step knows whether this rank
/// has another. A failure while reading becomes a status reported at the next step.
class Lookahead {
 public:
  Lookahead(BatchSource& source, int rank, int ranks, const Context& ctx)
      : source_(source), rank_(rank), ranks_(ranks), ctx_(ctx) {
    has_cur_ = read(cur_);
    has_nxt_ = has_cur_ && read(nxt_);
  }
  const data::Batch& current() const { return has_cur_ ? cur_ : empty_; }
  bool has_next() const { return has_nxt_; }
  /// The batch after current(), when has_next().
  const data::Batch* next() const { return has_nxt_ ? &nxt_ : nullptr; }
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
    const ProfilePhase phase(ctx_, "data wait");
    try {
      return source_.next(b);
    } catch (const DeviceError&) {
      throw;
    } catch (const Error& e) {
      error_ = fmt::format("reading the next batch failed: {}", e.what());
      // At once for the other ranks' sake; alone, the step's JobError says it (once).
      if (ranks_ > 1) log().error("rank {}: {}", rank_, error_);
      status_ = kStatusDataFailed;
      return false;
    }
  }

  BatchSource& source_;
  int rank_, ranks_;
  const Context& ctx_;
  data::Batch cur_, nxt_, empty_;
  bool has_cur_ = false, has_nxt_ = false;
  uint16_t status_ = kStatusOk;
  std::string error_;
  double wait_seconds_ = 0;
};

/// The trainer's own settings that every rank must share, as "key=value" lines (compared at
/// start-up; not part of the configuration hash a checkpoint is checked against).
std::string settings_text(const TrainerConfig& c) {
  return fmt::format(
      "epochs={}\nresume={}\nresume_or_start={}\ncheckpoint_dir={}\n"
      "checkpoint_every={}\nkeep_checkpoints={}\neval_every={}\n"
      "select_metric={}\nearly_stop_patience={}\nbest_dir={}\nrestore_best={}\n"
      "keep_best_in_memory={}\nall_reduce_bucket_mb={}\n",
      c.epochs, c.resume, c.resume_or_start, c.checkpoint_dir, c.checkpoint_every,
      c.keep_checkpoints, c.eval_every, c.select_metric, c.early_stop_patience, c.best_dir,
      c.restore_best, c.keep_best_in_memory, c.all_reduce_bucket_mb);
}

/// The feasign stores after an epoch (identical on every rank: rank 0 reports them).
void log_dynamic_tables(const Context& ctx, models::Model<float>& model, const std::string& when) {
  for (auto* t : model.tables()) {
    const auto* d = t->dynamic_table();
    if (!d) continue;
    d->sync_host(ctx);
    const auto& c = d->counters();
    int64_t admitted_now = 0;
    for (int64_t s = 0; s < d->capacity(); ++s)
      admitted_now += d->index().occupied(s) && d->admitted(s) ? 1 : 0;
    // Dropped feasigns got no slot (the table was full of the step's own): they trained
    // nothing. That is a capacity too small for the data, not the store's lifecycle.
    log().log(c.dropped > 0 ? spdlog::level::warn : spdlog::level::info,
              "{}: dynamic table '{}': {} feasigns of {} ({} with embedx); since this process "
              "started {} created, {} admitted, {} evicted when full, {} dropped (full of the "
              "step's own{}), {} deleted by {} shrinks",
              when, t->config().name, d->size(), d->capacity(), admitted_now, c.inserted,
              c.admitted, c.evicted, c.dropped,
              c.dropped > 0 ? ": they trained nothing; raise the table's capacity" : "", c.deleted,
              c.shrinks);
  }
}

/// TrainerConfig::all_reduce_bucket_mb in bytes (checked).
int64_t bucket_bytes(double mb) {
  LOCKSTEP_CHECK(mb >= 0 && mb <= 1 << 20,
                 "all_reduce_bucket_mb = {} is outside [0, 1048576] (0: one all-reduce after "
                 "the backward)",
                 mb);
  return static_cast<int64_t>(mb * (1 << 20));
}

/// How train_epoch() ended.
enum class EpochEnd { kDone, kSignal, kEarlyStop };

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
  EvalResult last_eval;
  /// Model selection over the evaluations of fit()'s evaluation source (kept in checkpoints as
  /// selection.json, so that a resumed run goes on comparing with the same best).
  struct Selection {
    double best = NAN;  // the selection metric's best value (NaN: no evaluation yet)
    double best_auc = NAN, best_logloss = NAN;
    uint64_t best_step = 0;
    int64_t best_epoch = 0;   // 1-based
    int64_t since_best = 0;   // evaluations since the best one
    EvalResult eval;          // the best evaluation (after a resume: its auc and logloss only)
  } selection;
  uint64_t evaluated_at = UINT64_MAX;  // step of the running fit()'s last evaluation
  int64_t epoch_samples = 0;           // samples of all ranks trained in the current epoch
  bool completed = false;              // the last fit() trained all its epochs (or stopped early)
  bool resumed_epoch_complete = false;  // stopped (or resumed) there: the epoch's end is next
  int64_t last_epoch = 0;              // the epoch last trained (0-based), for metrics lines
  bool warned_no_auc = false;          // evaluate() has warned of an undefined AUC
  bool holds_best = false;             // the model holds the restored best (selection.best_step)
  bool resume_tried = false;           // a fit() has looked for a checkpoint to resume
  CheckpointExtras driver_extras;      // set_checkpoint_extra()
  // config.keep_best_in_memory: the best model's state and its step
  std::unique_ptr<HostModelState> best_state;
  uint64_t best_state_step = 0;
  uint64_t step_no = 0, updates = 0, config_hash = 0;
  std::string config_text;         // what config_hash covers (consistency.h)
  uint64_t saved_at = UINT64_MAX;  // step of the last checkpoint the running fit() wrote
  int64_t epoch = 0, step_in_epoch = 0;
  double side_seconds = 0;  // evaluation and checkpoints during the running fit()

  Impl(models::Model<float>& m, comm::Communicator& c, Context& x, TrainerConfig cfg)
      : model(m),
        comm(c),
        ctx(x),
        config(std::move(cfg)),
        host(c, x),
        step(m, c, x, bucket_bytes(config.all_reduce_bucket_mb)),
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
  EpochEnd train_epoch(BatchSource& train, BatchSource* eval, FitResult& result);
  /// `epoch_complete`: written on the epoch's last step, before the epoch's end.
  std::string save_checkpoint(bool epoch_complete = false);
  void save_sparse(SparseSaveKind kind);
  void boundary(const std::string& what);
  EvalResult evaluate(BatchSource& data);
  CheckpointMeta current_meta(bool epoch_complete = false) const;
  CheckpointExtras checkpoint_extras() const;
  /// Evaluates `eval` as validation data, updates the selection (writing best_dir on an
  /// improvement) and returns whether training stops early. Collective.
  bool evaluate_and_select(BatchSource& eval, FitResult& result);
  void save_best();
  void load_selection(const std::string& checkpoint);
  void restore_best(FitResult& result);
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
      check_range("sparse_delta_every", c.sparse_delta_every, int64_t{0}, int64_t{1} << 40);
      const auto tables = model.tables();
      LOCKSTEP_CHECK(
          c.sparse_export_dir.empty() ||
              std::any_of(tables.begin(), tables.end(), [](const auto* t) { return t->dynamic(); }),
          "sparse_export_dir (lockstep-train --export-sparse) = '{}': a sparse "
          "export writes dynamic tables, and the "
          "model has none (kind = \"dynamic\" in [[model.tables]])",
          c.sparse_export_dir);
      check_range("keep_checkpoints", int64_t{c.keep_checkpoints}, 1, 1 << 20);
      const auto& allowed = checkpoint_extra_files();  // found now, not at the first checkpoint
      for (const auto& [name, text] : c.model_files)
        LOCKSTEP_CHECK(std::find(allowed.begin(), allowed.end(), name) != allowed.end(),
                       "model_files: '{}' is not a checkpoint file (allowed: {})", name,
                       fmt::join(allowed, ", "));
      check_range("eval_every", c.eval_every, int64_t{0}, int64_t{1} << 40);
      check_range("early_stop_patience", c.early_stop_patience, int64_t{0}, int64_t{1} << 30);
      LOCKSTEP_CHECK(c.select_metric == "auc" || c.select_metric == "logloss",
                     "select_metric = '{}': use auc or logloss", c.select_metric);
      LOCKSTEP_CHECK(!(c.resume || c.resume_or_start) || !c.checkpoint_dir.empty(),
                     "resume needs a checkpoint_dir (lockstep-train: --resume needs "
                     "--checkpoint-dir)");
      if (comm.rank() == 0) {  // rank 0 writes the outputs: they must be writable before step 1
        m.progress.open_metrics();
        if (!c.checkpoint_dir.empty()) {
          probe_writable_directory(c.checkpoint_dir, "the checkpoint directory", /*create=*/true);
          remove_stale_checkpoint_temporaries(c.checkpoint_dir);
        }
        if (!c.best_dir.empty()) {
          probe_writable_parent(c.best_dir, "the directory of the best model");
          check_replaceable_directory(c.best_dir, "best_dir (lockstep-train --best-dir)");
        }
      }
    });
    m.config_hash = check_startup_consistency(m.host, ctx, model, c.run_config, settings_text(c));
    m.config_text = config_text(model, c.run_config);
  });
  // float learning rates as their shortest decimal (0.001, not 0.0010000000474974513)
  const auto decimal = [](float v) { return std::stod(fmt::format("{}", v)); };
  nlohmann::ordered_json lr = {{"dense", decimal(model.dense_optimizer().config().lr)}};
  if (!model.tables().empty())
    lr["sparse"] = decimal(model.tables()[0]->optimizer_config().lr);
  m.progress.set_learning_rates(lr);
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

void Trainer::boundary() {
  impl_->collective([&] { impl_->boundary(fmt::format("boundary at step {}", impl_->step_no)); });
}

void Trainer::save_sparse_base() {
  LOCKSTEP_CHECK(!impl_->config.sparse_export_dir.empty(),
                 "save_sparse_base: no sparse export directory set");
  impl_->collective([&] { impl_->save_sparse(SparseSaveKind::Base); });
}

std::vector<uint64_t> Trainer::replica_hashes() {
  return impl_->collective(
      [&] { return impl_->host.all_gather_u64({model_state_hash(impl_->ctx, impl_->model)}); });
}

EvalResult Trainer::evaluate(BatchSource& data, const std::string& split) {
  Impl& m = *impl_;
  const EvalResult r = m.collective([&] { return m.evaluate(data); });
  // The step and epoch of the parameters evaluated: the restored best model's, else the last.
  if (!split.empty())
    m.progress.on_eval(split, m.holds_best ? m.selection.best_epoch - 1 : m.last_epoch,
                       m.holds_best ? m.selection.best_step : m.step_no, r);
  return r;
}

void Trainer::vote(const std::string& phase, const std::function<void()>& fn) {
  impl_->collective([&] { agree(impl_->comm, impl_->ctx, phase, fn); });
}

void Trainer::set_checkpoint_extra(const std::string& name, std::string text) {
  // The other extras (model.toml, schema.toml, selection.json) are the trainer's own.
  LOCKSTEP_CHECK(name == "follow.txt",
                 "set_checkpoint_extra: '{}' is not a name a driver may write into a checkpoint "
                 "(\"follow.txt\")",
                 name);
  impl_->driver_extras[name] = std::move(text);
}

FitResult Trainer::fit(BatchSource& train, BatchSource* eval) {
  Impl& m = *impl_;
  FitResult result;
  const int64_t staged_ahead_before = m.step.steps_staged_ahead();
  SignalGuard signals(m.config.handle_signals);
  Profile profile;
  const bool profiling = m.config.profile && m.ctx.profile() == nullptr;
  const ScopedProfile attached(m.ctx, profiling ? &profile : m.ctx.profile());
  m.progress.start();
  m.completed = false;
  if (m.config.early_stop_patience > 0 && !eval && m.comm.rank() == 0)
    log().warn(
        "early_stop_patience = {} but fit() was given no evaluation source: no early "
        "stopping (and no best model) in this fit()",
        m.config.early_stop_patience);
  m.side_seconds = 0;
  m.saved_at = UINT64_MAX;
  m.evaluated_at = UINT64_MAX;
  m.selection = {};
  m.holds_best = false;
  m.best_state.reset();
  int64_t previous_epoch_samples = -1;  // of this fit()'s previous epoch
  m.collective([&] {
    bool finished = false;
    if ((m.config.resume || m.config.resume_or_start) && !m.resume_tried) {
      m.resume_tried = true;  // the same verdict on every rank
      agree(m.comm, m.ctx, "resuming", [&] { finished = m.resume(); });
      m.check_same_start(m.start_point);
    }
    m.progress.event("start", m.epoch, m.step_no,
                     {{"ranks", m.comm.size()},
                      {"model", m.model.name()},
                      {"epochs", m.config.epochs},
                      {"resumed", m.step_no > 0},
                      {"outputs", m.model.output_names()},
                      {"loss_terms", m.model.loss_term_names()}});
    if (finished) {  // a finished run: evaluate only, change nothing
      result.already_finished = true;
      if (eval) {
        m.restore_best(result);
        result.last_eval = m.evaluate(*eval);
      }
      m.epoch = m.step_in_epoch = 0;
      m.completed = true;
      return;
    }
    for (; m.epoch < m.config.epochs; ++m.epoch, m.step_in_epoch = 0) {
      // Resumed from the epoch's last step: its batches are done, its end is what comes next.
      const EpochEnd end =
          m.resumed_epoch_complete ? EpochEnd::kDone : m.train_epoch(train, eval, result);
      m.resumed_epoch_complete = false;
      m.last_epoch = m.epoch;
      if (end == EpochEnd::kSignal) {
        result.stopped = true;
        break;
      }
      if (end == EpochEnd::kEarlyStop) {
        result.early_stopped = true;
        break;
      }
      if (m.config.epoch_boundaries) m.boundary(fmt::format("epoch {}", m.epoch + 1));
      m.progress.on_epoch_end(m.epoch, m.step_no, m.epoch_samples);
      // An epoch with no data after one with data: most likely a BatchSource whose start_epoch()
      // does not rewind (the count is over all ranks, so every rank decides alike).
      if (m.epoch_samples == 0 && previous_epoch_samples > 0 && m.comm.rank() == 0)
        log().warn(
            "epoch {} trained no samples on any rank, epoch {} trained {}: does the data "
            "source rewind in start_epoch()? (every epoch reads the data again)",
            m.epoch + 1, m.epoch, previous_epoch_samples);
      previous_epoch_samples = m.epoch_samples;
      // Each rank reports what its data source let pass (skipped bad records): no collective.
      if (const std::string report = train.epoch_report(); !report.empty())
        log().warn("epoch {}: rank {}: {}", m.epoch + 1, m.comm.rank(), report);
      if (eval && m.evaluated_at != m.step_no && m.evaluate_and_select(*eval, result)) {
        result.early_stopped = true;
        break;
      }
    }
    if (result.early_stopped) {
      const auto& s = m.selection;
      if (m.comm.rank() == 0)
        log().info("early stop at step {}: {} evaluation(s) without improving on the best {} "
                   "{:.6f} (step {}, epoch {})",
                   m.step_no, s.since_best, m.config.select_metric, s.best, s.best_step,
                   s.best_epoch);
      m.progress.event("early_stop", m.last_epoch, m.step_no,
                       {{"metric", m.config.select_metric},
                        {"best", json_number(s.best)},
                        {"best_step", s.best_step},
                        {"best_epoch", s.best_epoch},
                        {"patience", m.config.early_stop_patience}});
      // The run is over: a resume of its last checkpoint trains nothing more.
      m.epoch = m.config.epochs;
      m.step_in_epoch = 0;
    }
    if (!result.stopped) {
      // (after an early stop also when one was written at this step: it now marks the end)
      if (!m.config.checkpoint_dir.empty() && (m.saved_at != m.step_no || result.early_stopped))
        m.timed([&] { result.last_checkpoint = m.save_checkpoint(); });
      m.epoch = 0;  // completed: a further fit() trains config.epochs more epochs
      m.step_in_epoch = 0;
      m.completed = true;  // ... and a checkpoint written now marks the run finished
      if (eval) m.restore_best(result);
    }
  });
  const auto& s = m.selection;
  if (!std::isnan(s.best)) {
    result.best_step = s.best_step;
    result.best_epoch = s.best_epoch;
    result.best_eval = s.eval;
  }
  // Without epoch boundaries (lockstep-train --follow: day markers) the stores are reported
  // at the end of each fit() too, so that evictions and drops never go unsaid.
  if (!m.config.epoch_boundaries && m.comm.rank() == 0 && result.steps > 0)
    log_dynamic_tables(m.ctx, m.model, fmt::format("step {}", m.step_no));
  if (result.steps > 0 && result.samples == 0 && m.comm.rank() == 0)
    log().warn(
        "fit() ran {} step(s) and trained on 0 samples: the training source gave no "
        "record on any rank",
        result.steps);
  result.steps_staged_ahead =
      static_cast<uint64_t>(m.step.steps_staged_ahead() - staged_ahead_before);
  result.seconds = m.progress.elapsed();
  result.train_seconds = result.seconds - m.side_seconds;
  if (profiling && m.comm.rank() == 0)
    log().info("where rank 0's training steps spent their time ({} steps):\n{}", result.steps,
               profile.table(result.steps));
  if (m.step.local().graphs() && m.comm.rank() == 0) {
    const GraphStats g = m.step.local().graph_stats();
    log().info("CUDA graphs: {} steps replayed, {} captured, {} launched every kernel", g.replayed,
               g.captured, g.eager);
  }
  m.progress.event("end", m.last_epoch, m.step_no,
                   {{"steps", result.steps},
                    {"seconds", result.seconds},
                    {"train_seconds", result.train_seconds},
                    {"data_wait_seconds", result.data_wait_seconds},
                    {"stopped", result.stopped},
                    {"early_stopped", result.early_stopped},
                    {"restored_best", result.restored_best}});
  return result;
}

/// Trains the rest of the current epoch, evaluating `eval` every config.eval_every steps. Returns
/// kSignal when a stop signal ended training (a checkpoint written when a directory is set),
/// kEarlyStop when an evaluation ended it.
EpochEnd Trainer::Impl::train_epoch(BatchSource& train, BatchSource* eval, FitResult& result) {
  train.start_epoch(epoch);
  if (step_in_epoch > 0)
    train.skip(step_in_epoch);  // epoch_samples: as the checkpoint (or the stopped fit) left it
  else
    epoch_samples = 0;
  const auto term_names = model.loss_term_names();
  Lookahead data(train, comm.rank(), comm.size(), ctx);
  step.drop_ahead();  // staged by an earlier fit() that stopped early: not this source's
  while (true) {
    const StepInput input{step_no, data.has_next(), data.status(), data.error(),
                          config.handle_signals && stop_signal_pending()};
    const StepSummary& summary =
        step.run(data.current(), input, fault, config.stage_ahead ? data.next() : nullptr);
    const bool updated = summary.samples > 0;
    updates += updated;
    ++step_no;
    ++step_in_epoch;
    ++result.steps;
    result.updates += updated;
    result.samples += static_cast<int64_t>(summary.samples);
    result.loss_sum += summary.loss_sum;
    epoch_samples += static_cast<int64_t>(summary.samples);
    const StepInfo info{step_no - 1, epoch, &data.current(), summary, updated};
    for (auto& cb : callbacks) cb(info);
    StepProgress p;
    p.next_step = step_no;
    p.epoch = epoch;
    p.steps_run = result.steps;
    p.samples = result.samples;
    p.epoch_samples = epoch_samples;
    p.data_wait_s = result.data_wait_seconds + data.wait_seconds();
    p.total_records = train.total_records();
    if (!term_names.empty() && progress.log_due(step_no)) {  // every rank: a collective
      const auto sums = host.all_reduce_sum(model.take_loss_terms(ctx));
      for (size_t i = 0; i < term_names.size() && i < sums.size(); ++i)
        p.loss_terms.emplace_back(term_names[i], sums[i]);
    }
    progress.on_step(summary, p);
    if (summary.stop_requested) {
      result.data_wait_seconds += data.wait_seconds();
      if (comm.rank() == 0) log().warn("stop requested by a signal: stopping at step {}", step_no);
      // On the epoch's last step a resume then does the epoch's end first.
      if (!config.checkpoint_dir.empty())
        result.last_checkpoint = save_checkpoint(/*epoch_complete=*/!summary.any_next);
      resumed_epoch_complete = !summary.any_next;  // so does this Trainer's next fit()
      return EpochEnd::kSignal;
    }
    // Mid-epoch evaluation (not after the epoch's last step: the epoch's own follows).
    if (eval && config.eval_every > 0 && step_no % config.eval_every == 0 && summary.any_next &&
        evaluate_and_select(*eval, result)) {
      result.data_wait_seconds += data.wait_seconds();
      return EpochEnd::kEarlyStop;
    }
    if (!config.sparse_export_dir.empty() && config.sparse_delta_every > 0 &&
        step_no % config.sparse_delta_every == 0 && summary.any_next)
      save_sparse(SparseSaveKind::Delta);  // (the epoch's last step: its base follows)
    if (!config.checkpoint_dir.empty() && config.checkpoint_every > 0 &&
        step_no % config.checkpoint_every == 0) {
      // On the epoch's last step the checkpoint holds the state before the epoch's end
      // (boundary, evaluation): marked so, and not the run's final one (saved_at unchanged).
      timed(
          [&] { result.last_checkpoint = save_checkpoint(/*epoch_complete=*/!summary.any_next); });
      if (summary.any_next) saved_at = step_no;
    }
    if (!summary.any_next) {
      result.data_wait_seconds += data.wait_seconds();
      return EpochEnd::kDone;
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
  if (const CheckpointMeta written = read_checkpoint_meta(path);
      written.config_hash != config_hash) {
    const std::string before = read_checkpoint_extra(path, "config.txt");  // "": older lockstep
    throw Error(fmt::format(
        "{}: written by a run with another configuration ({}): resume with the configuration "
        "that wrote it, or start a new --checkpoint-dir (--init-from {} starts from its "
        "parameters)",
        path,
        before.empty()
            ? fmt::format("hash {:016x}, this run {:016x}", written.config_hash, config_hash)
            : describe_difference(before, "in the checkpoint", config_text, "in this run"),
        path));
  }
  const CheckpointMeta meta = read_checkpoint(path, model, ctx, config_hash);
  LOCKSTEP_CHECK(meta.ranks == comm.size(),
                 "{}: written by a run with {} ranks; resume it with {} ranks, not {} (each "
                 "rank's data position depends on the rank count)",
                 path, meta.ranks, meta.ranks, comm.size());
  step_no = meta.step;
  updates = meta.updates;
  epoch = meta.epoch;
  step_in_epoch = meta.step_in_epoch;
  epoch_samples = meta.epoch_samples;
  resumed_epoch_complete = meta.epoch_complete;
  ctx.set_random_offset(meta.random_offset);
  load_selection(path);
  start_point = fmt::format("resumes from {} (step {})", path, step_no);
  const bool finished = epoch >= config.epochs;
  if (comm.rank() == 0) {
    if (finished)
      log().info(
          "{}: this run already finished (step {}: its {} epoch(s) trained, or it "
          "stopped early): nothing to train, nothing written",
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

std::string Trainer::Impl::save_checkpoint(bool epoch_complete) {
  LOCKSTEP_CHECK(!config.checkpoint_dir.empty(), "save_checkpoint: no checkpoint directory set");
  std::string path, error;
  if (comm.rank() == 0) {
    try {
      path = write_checkpoint(config.checkpoint_dir, current_meta(epoch_complete), model, ctx,
                              config.keep_checkpoints, checkpoint_extras());
      log().info("checkpoint written: {}", path);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  // Every rank learns whether rank 0 succeeded, so that all stop together on a failure.
  host.vote(fmt::format("writing the checkpoint at step {}", step_no), error);
  return path;
}

// A boundary of the feasign store, on every rank at the same step: the base export (it holds what
// the period trained), then the shrink, so replicas stay identical.
void Trainer::Impl::boundary(const std::string& what) {
  if (!config.sparse_export_dir.empty()) save_sparse(SparseSaveKind::Base);
  model.end_epoch(ctx);
  if (comm.rank() == 0) log_dynamic_tables(ctx, model, what);
}

// Rank 0 writes the export; every rank learns whether it succeeded (so all stop together on a
// failure) and then resets the delta scores of what it carried, identically.
void Trainer::Impl::save_sparse(SparseSaveKind kind) {
  std::string error;
  if (comm.rank() == 0) {
    try {
      const auto info = write_sparse_model(ctx, config.sparse_export_dir, kind, model,
                                           static_cast<int64_t>(step_no));
      std::vector<std::string> counts;
      for (const auto& [table, n] : info.feasigns) counts.push_back(fmt::format("{} {}", table, n));
      log().info("sparse {} written: {} ({} feasigns)", sparse_save_kind_name(kind), info.path,
                 fmt::join(counts, ", "));
    } catch (const Error& e) {
      error = e.what();
    }
  }
  host.vote(fmt::format("writing the sparse {} at step {}", sparse_save_kind_name(kind), step_no),
            error);
  mark_sparse_saved(ctx, kind, model);
}

EvalResult Trainer::Impl::evaluate(BatchSource& data) {
  const ScopedProfile detached(ctx, nullptr);  // evaluation is not part of the step profile
  Scores local;
  // A bad record in the part of the data one rank reads fails that rank only: a vote.
  agree(comm, ctx, "evaluation", [&] { local = score(step.local(), data); });
  // What --on-bad-record skip left out of this rank's part, as the training data reports it.
  if (const std::string report = data.epoch_report(); !report.empty())
    log().warn("evaluation: rank {}: {}", comm.rank(), report);
  Scores all;  // every rank's scores, rank 0's first (the same order as the labels)
  all.output_names = local.output_names;
  for (const auto& p : local.probs) all.probs.push_back(host.all_gather(p));
  all.labels = host.all_gather(local.labels);
  last_eval = eval_result(all);
  if (std::isnan(last_eval.auc) && comm.rank() == 0 && !warned_no_auc) {
    warned_no_auc = true;  // once per Trainer: evaluations repeat every epoch
    log().warn(
        "evaluation: the AUC is undefined over {} sample(s){}: it needs clicks and "
        "non-clicks{}",
        last_eval.samples,
        last_eval.samples > 0 && !last_eval.outputs.empty()
            ? fmt::format(" (click rate {:.4f})", last_eval.outputs.front().observed_ctr)
            : std::string(),
        config.select_metric == "auc"
            ? "; model selection by AUC cannot pick a best model (select by logloss)"
            : "");
  }
  return last_eval;
}

CheckpointMeta Trainer::Impl::current_meta(bool epoch_complete) const {
  CheckpointMeta meta;
  meta.step = step_no;
  meta.updates = updates;
  meta.epoch = completed ? config.epochs : epoch;  // completed: a resume trains nothing more
  meta.step_in_epoch = completed ? 0 : step_in_epoch;
  meta.random_offset = ctx.random_offset();
  meta.ranks = comm.size();
  meta.config_hash = config_hash;
  meta.model = model.name();
  meta.epoch_complete = epoch_complete;
  meta.epoch_samples = epoch_samples;
  return meta;
}

CheckpointExtras Trainer::Impl::checkpoint_extras() const {
  CheckpointExtras extras = config.model_files;
  extras["config.txt"] = config_text;  // names what changed when a resume is refused
  for (const auto& [name, text] : driver_extras) extras[name] = text;
  const auto& s = selection;
  if (!std::isnan(s.best))
    extras["selection.json"] = nlohmann::ordered_json{{"metric", config.select_metric},
                                                      {"best", s.best},
                                                      {"best_auc", json_number(s.best_auc)},
                                                      {"best_logloss", json_number(s.best_logloss)},
                                                      {"best_step", s.best_step},
                                                      {"best_epoch", s.best_epoch},
                                                      {"since_best", s.since_best}}
                                   .dump(2) + "\n";
  return extras;
}

bool Trainer::Impl::evaluate_and_select(BatchSource& eval, FitResult& result) {
  auto& s = selection;
  bool improved = false;
  timed([&] {
    result.last_eval = evaluate(eval);
    const bool auc = config.select_metric == "auc";
    const double v = auc ? result.last_eval.auc : result.last_eval.logloss;
    improved = !std::isnan(v) && (std::isnan(s.best) || (auc ? v > s.best : v < s.best));
    if (improved) {
      s.best = v;
      s.best_auc = result.last_eval.auc;
      s.best_logloss = result.last_eval.logloss;
      s.best_step = step_no;
      s.best_epoch = epoch + 1;
      s.since_best = 0;
      s.eval = result.last_eval;
      if (!config.best_dir.empty()) {
        save_best();
      } else if (config.keep_best_in_memory) {
        best_state = std::make_unique<HostModelState>(host_model_state(model, ctx));
        best_state_step = step_no;
      }
    } else {
      ++s.since_best;
    }
  });
  evaluated_at = step_no;
  progress.on_eval(config.eval_split, epoch, step_no, result.last_eval,
                   {{"selection",
                     {{"metric", config.select_metric},
                      {"improved", improved},
                      {"best", json_number(s.best)},
                      {"best_step", s.best_step},
                      {"best_epoch", s.best_epoch},
                      {"since_best", s.since_best}}}});
  return config.early_stop_patience > 0 && s.since_best >= config.early_stop_patience;
}

void Trainer::Impl::save_best() {
  std::string error;
  if (comm.rank() == 0) {
    try {
      write_checkpoint_directory(config.best_dir, current_meta(), model, ctx, checkpoint_extras());
      log().info("best model so far ({} {:.6f}, step {}) written: {}", config.select_metric,
                 selection.best, step_no, config.best_dir);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  host.vote(fmt::format("writing the best model at step {}", step_no), error);
}

/// A resumed run goes on with the selection state of its checkpoint (none: it starts afresh).
void Trainer::Impl::load_selection(const std::string& checkpoint) {
  selection = {};
  const std::string text = read_checkpoint_extra(checkpoint, "selection.json");
  if (text.empty()) return;
  const std::string path = checkpoint + "/selection.json";
  try {
    const auto j = nlohmann::json::parse(text);
    const auto value = [](const nlohmann::json& v) { return v.is_null() ? NAN : v.get<double>(); };
    LOCKSTEP_CHECK(j.at("metric").get<std::string>() == config.select_metric,
                   "{}: selected on {}, this run on {}: resume with the same selection metric",
                   path, j.at("metric").get<std::string>(), config.select_metric);
    selection.best = value(j.at("best"));
    selection.best_auc = value(j.at("best_auc"));
    selection.best_logloss = value(j.at("best_logloss"));
    selection.best_step = j.at("best_step").get<uint64_t>();
    selection.best_epoch = j.at("best_epoch").get<int64_t>();
    selection.since_best = j.at("since_best").get<int64_t>();
    selection.eval.auc = selection.best_auc;
    selection.eval.logloss = selection.best_logloss;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not a selection state: {}", path, e.what()));
  }
}

/// Loads best_dir into the model on every rank when this run kept a best model that differs from
/// the current state (config.restore_best).
void Trainer::Impl::restore_best(FitResult& result) {
  if (!config.restore_best || std::isnan(selection.best) || selection.best_step == step_no) return;
  if (!config.best_dir.empty()) {
    agree(comm, ctx, "restoring the best model", [&] {
      const CheckpointMeta meta = read_checkpoint(config.best_dir, model, ctx, 0);
      LOCKSTEP_CHECK(meta.step == selection.best_step,
                     "{}: holds the model of step {}, the best was step {} (written by another "
                     "run?)",
                     config.best_dir, meta.step, selection.best_step);
    });
  } else if (best_state && best_state_step == selection.best_step) {
    restore_host_model_state(model, ctx, *best_state);  // the same on every rank: no collective
  } else {
    return;  // kept in memory by a run before a restart: gone
  }
  result.restored_best = holds_best = true;
  if (comm.rank() == 0)
    log().info("restored the best model ({} {:.6f}, step {}, epoch {}) from {}",
               config.select_metric, selection.best, selection.best_step, selection.best_epoch,
               config.best_dir.empty() ? std::string("memory") : config.best_dir);
}

}  // namespace lockstep::train

#include "train/progress.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "lockstep/core/logging.h"

namespace lockstep::train {

namespace {
using Clock = std::chrono::steady_clock;

std::string hms(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  return fmt::format("{:02d}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}
}  // namespace

Progress::Progress(const TrainerConfig& config, int rank) : config_(config), rank_(rank) {}

void Progress::open_metrics() {
  if (rank_ == 0 && !config_.metrics_path.empty() && !metrics_.is_open()) {
    metrics_.open(config_.metrics_path, std::ios::app);
    LOCKSTEP_CHECK(metrics_.good(), "{}: cannot open the metrics file for appending",
                   config_.metrics_path);
  }
}

void Progress::start() {
  t0_ = last_log_ = Clock::now();
  samples_since_log_ = 0;
  steps_since_log_ = 0;
  wait_at_log_ = 0;
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(Clock::now() - t0_).count();
}

void Progress::write_metrics(const std::string& json_line) {
  if (metrics_.is_open()) metrics_ << json_line << std::endl;
}

void Progress::on_step(uint64_t next_step, int64_t epoch, const StepSummary& summary,
                       uint64_t steps_run, const EvalResult& last_eval, double data_wait_s) {
  samples_since_log_ += static_cast<int64_t>(summary.samples);
  ++steps_since_log_;
  if (rank_ != 0 || config_.log_every <= 0 || next_step % config_.log_every != 0) return;
  const auto now = Clock::now();
  const double dt = std::chrono::duration<double>(now - last_log_).count();
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  const double rate = samples_since_log_ / std::max(dt, 1e-9);
  std::string line = fmt::format("step {} | epoch {}/{} | {:.0f} samples/s | loss {:.4f}",
                                 next_step, epoch + 1, config_.epochs, rate,
                                 summary.samples ? summary.loss_sum / summary.samples : NAN);
  if (!std::isnan(last_eval.auc)) line += fmt::format(" | eval AUC {:.4f}", last_eval.auc);
  const double step_ms = 1e3 * dt / static_cast<double>(steps_since_log_);
  const double wait_ms = 1e3 * (data_wait_s - wait_at_log_) / static_cast<double>(steps_since_log_);
  line += fmt::format(" | {:.1f} ms/step, data wait {:.2f} ms", step_ms, wait_ms);
  const int64_t total = config_.steps_per_epoch * config_.epochs;
  if (total > 0 && static_cast<int64_t>(steps_run) < total) {
    const double per_step = elapsed / static_cast<double>(steps_run);
    line += fmt::format(" | ETA {}", hms(per_step * (total - static_cast<double>(next_step))));
  }
  log().info("{} | elapsed {}", line, hms(elapsed));
  write_metrics(nlohmann::json{{"step", next_step},
                               {"epoch", epoch},
                               {"samples_per_s", rate},
                               {"loss", summary.samples ? summary.loss_sum / summary.samples : 0.0},
                               {"step_ms", step_ms},
                               {"data_wait_ms", wait_ms}}
                    .dump());
  last_log_ = now;
  samples_since_log_ = 0;
  steps_since_log_ = 0;
  wait_at_log_ = data_wait_s;
}

void Progress::on_epoch_end(int64_t epoch, uint64_t step, int64_t samples) {
  if (rank_ != 0) return;
  epoch_samples_ = samples;
  log().info("epoch {} trained on {} samples (all ranks) in steps up to {}", epoch + 1, samples,
             step);
}

void Progress::on_eval(int64_t epoch, uint64_t step, const EvalResult& eval) {
  if (rank_ != 0) return;
  log().info("epoch {} done at step {}: eval AUC {:.4f}, logloss {:.4f} over {} samples",
             epoch + 1, step, eval.auc, eval.logloss, eval.samples);
  write_metrics(nlohmann::json{{"step", step},
                               {"epoch", epoch + 1},
                               {"eval_auc", eval.auc},
                               {"eval_logloss", eval.logloss},
                               {"eval_samples", eval.samples},
                               {"epoch_train_samples", epoch_samples_}}
                    .dump());
}

}  // namespace lockstep::train

#include "train/progress.h"

#include <cmath>
#include <ctime>

#include "lockstep/core/logging.h"

namespace lockstep::train {

namespace {
using Clock = std::chrono::steady_clock;

std::string hms(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  return fmt::format("{:02d}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
}

/// Now as UTC ISO 8601 with milliseconds: "2026-11-30T17:05:09.123Z".
std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, ms);
}

}  // namespace

nlohmann::ordered_json json_number(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json();
}

nlohmann::ordered_json metrics_json(const BinaryMetrics& m) {
  return {{"auc", json_number(m.auc)},
          {"logloss", json_number(m.logloss)},
          {"normalized_entropy", json_number(m.normalized_entropy)},
          {"mean_prediction", json_number(m.mean_prediction)},
          {"observed_ctr", json_number(m.observed_ctr)},
          {"calibration", json_number(m.calibration)}};
}

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
  samples_since_log_ = steps_since_log_ = samples_ = 0;
  loss_since_log_ = wait_at_log_ = 0;
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(Clock::now() - t0_).count();
}

nlohmann::ordered_json Progress::common(const char* name, int64_t epoch, uint64_t step) const {
  return {{"event", name},
          {"time", utc_now()},
          {"elapsed_s", elapsed()},
          {"step", step},
          {"epoch", epoch + 1},
          {"samples", samples_}};
}

void Progress::write_metrics(const nlohmann::ordered_json& line) {
  if (metrics_.is_open()) metrics_ << line.dump() << std::endl;
}

void Progress::event(const char* name, int64_t epoch, uint64_t step,
                     const nlohmann::ordered_json& fields) {
  if (rank_ != 0 || !metrics_.is_open()) return;
  nlohmann::ordered_json line = common(name, epoch, step);
  line.update(fields);
  write_metrics(line);
}

void Progress::on_step(const StepSummary& summary, const StepProgress& p) {
  samples_since_log_ += static_cast<int64_t>(summary.samples);
  loss_since_log_ += summary.loss_sum;
  samples_ = p.samples;
  ++steps_since_log_;
  if (rank_ != 0 || !log_due(p.next_step)) return;
  const auto now = Clock::now();
  const double dt = std::chrono::duration<double>(now - last_log_).count();
  const double elapsed = std::chrono::duration<double>(now - t0_).count();
  const double rate = samples_since_log_ / std::max(dt, 1e-9);
  const double n = static_cast<double>(samples_since_log_);
  const double loss = samples_since_log_ ? loss_since_log_ / n : NAN;
  std::string line = fmt::format("step {} | epoch {}/{} | {:.0f} samples/s | loss {:.4f}",
                                 p.next_step, p.epoch + 1, config_.epochs, rate, loss);
  nlohmann::ordered_json terms = nlohmann::ordered_json::object();
  for (const auto& [name, sum] : p.loss_terms) {
    terms[name] = json_number(samples_since_log_ ? sum / n : NAN);
    line += fmt::format(" {} {:.4f}", name, samples_since_log_ ? sum / n : NAN);
  }
  const double step_ms = 1e3 * dt / static_cast<double>(steps_since_log_);
  const double wait_ms =
      1e3 * (p.data_wait_s - wait_at_log_) / static_cast<double>(steps_since_log_);
  line += fmt::format(" | {:.1f} ms/step, data wait {:.2f} ms", step_ms, wait_ms);
  // ETA: the samples left at this fit()'s rate when the records per epoch are known, else the
  // steps left when the steps per epoch are.
  double eta = NAN;
  if (p.total_records > 0 && p.samples > 0) {
    const double left = static_cast<double>(p.total_records) * (config_.epochs - p.epoch) -
                        static_cast<double>(p.epoch_samples);
    eta = std::max(0.0, left) * elapsed / static_cast<double>(p.samples);
  } else if (config_.steps_per_epoch > 0 && p.steps_run > 0) {
    const int64_t total = config_.steps_per_epoch * config_.epochs;
    eta = std::max(0.0, static_cast<double>(total) - static_cast<double>(p.next_step)) * elapsed /
          static_cast<double>(p.steps_run);
  }
  if (!std::isnan(eta)) line += fmt::format(" | ETA {}", hms(eta));
  log().info("{} | elapsed {}", line, hms(elapsed));
  nlohmann::ordered_json j = common("train", p.epoch, p.next_step);
  j["loss"] = json_number(loss);
  if (!terms.empty()) j["loss_terms"] = terms;
  j["lr"] = lr_;
  j["samples_per_s"] = rate;
  j["step_ms"] = step_ms;
  j["data_wait_ms"] = wait_ms;
  j["eta_s"] = json_number(eta);
  write_metrics(j);
  last_log_ = now;
  samples_since_log_ = steps_since_log_ = 0;
  loss_since_log_ = 0;
  wait_at_log_ = p.data_wait_s;
}

void Progress::on_epoch_end(int64_t epoch, uint64_t step, int64_t samples) {
  if (rank_ != 0) return;
  log().info("epoch {} trained on {} samples (all ranks) in steps up to {}", epoch + 1, samples,
             step);
  event("epoch", epoch, step, {{"epoch_samples", samples}});
}

void Progress::on_eval(const std::string& split, int64_t epoch, uint64_t step,
                       const EvalResult& eval, const nlohmann::ordered_json& extra) {
  if (rank_ != 0) return;
  std::string outputs;
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (size_t i = 0; i < eval.outputs.size(); ++i) {
    const BinaryMetrics& m = eval.outputs[i];
    const std::string& name = eval.output_names[i];
    metrics[name] = metrics_json(m);
    outputs += fmt::format("{}{}AUC {:.4f}, logloss {:.4f}, NE {:.4f}, calibration {:.3f}",
                           i ? "; " : "", eval.outputs.size() > 1 ? name + " " : "", m.auc,
                           m.logloss, m.normalized_entropy, m.calibration);
  }
  log().info("{} at step {} (epoch {}): {} over {} samples", split, step, epoch + 1, outputs,
             eval.samples);
  nlohmann::ordered_json j = common("eval", epoch, step);
  j["split"] = split;
  j["eval_samples"] = eval.samples;
  j["metrics"] = metrics;
  j.update(extra);
  write_metrics(j);
}

}  // namespace lockstep::train

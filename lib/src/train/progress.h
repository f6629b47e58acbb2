#pragma once
// Internal: rank 0's progress lines and JSON-lines metrics file (docs/metrics.md) during fit().

#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lockstep/train/trainer.h"

namespace lockstep::train {

/// What the trainer knows after a step, for its progress line.
struct StepProgress {
  uint64_t next_step = 0;     // the step number after this one
  int64_t epoch = 0;          // 0-based
  uint64_t steps_run = 0;     // steps of this fit()
  int64_t samples = 0;        // global samples trained by this fit()
  int64_t epoch_samples = 0;  // of which in the current epoch
  double data_wait_s = 0;     // this rank's seconds waiting for batches in this fit()
  int64_t total_records = -1; // records of one epoch (all ranks), -1 when unknown
  /// On a log step: each loss term (Model::loss_term_names()) summed over every rank's samples
  /// since the previous progress line.
  std::vector<std::pair<std::string, double>> loss_terms;
};

class Progress {
 public:
  Progress(const TrainerConfig& config, int rank);
  /// Opens config.metrics_path for appending on rank 0 (Error naming the path if it cannot).
  void open_metrics();
  /// The learning rates written with each "train" line.
  void set_learning_rates(nlohmann::ordered_json lr) { lr_ = std::move(lr); }

  /// Starts the clocks of one fit().
  void start();
  /// Whether the step numbered next_step - 1 ends with a progress line (the same on every rank).
  bool log_due(uint64_t next_step) const {
    return config_.log_every > 0 && next_step % static_cast<uint64_t>(config_.log_every) == 0;
  }
  /// After each step: the loss and samples accumulate; on log steps a progress line and a
  /// "train" metrics line.
  void on_step(const StepSummary& summary, const StepProgress& p);
  /// After the last step of an epoch: `samples` trained on in it, summed over ranks.
  void on_epoch_end(int64_t epoch, uint64_t step, int64_t samples);
  /// After an evaluation of `split` ("valid", "test"): a log line with every output's metrics and
  /// an "eval" metrics line with `extra` (model selection) merged in.
  void on_eval(const std::string& split, int64_t epoch, uint64_t step, const EvalResult& eval,
               const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());
  /// Any other event line (start, epoch, early_stop, end): the common fields and `fields`.
  void event(const char* name, int64_t epoch, uint64_t step, const nlohmann::ordered_json& fields);
  /// Seconds since start().
  double elapsed() const;

 private:
  void write_metrics(const nlohmann::ordered_json& line);
  nlohmann::ordered_json common(const char* name, int64_t epoch, uint64_t step) const;

  const TrainerConfig& config_;
  int rank_;
  std::ofstream metrics_;
  nlohmann::ordered_json lr_ = nlohmann::ordered_json::object();
  std::chrono::steady_clock::time_point t0_, last_log_;
  int64_t samples_since_log_ = 0, steps_since_log_ = 0, samples_ = 0;
  double loss_since_log_ = 0, wait_at_log_ = 0;
};

/// `v`, or null when it is NaN or infinite (JSON has no NaN: null stands for "undefined", e.g.
/// the AUC of data with one class).
nlohmann::ordered_json json_number(double v);

/// The metrics of one output as a JSON object (docs/metrics.md).
nlohmann::ordered_json metrics_json(const BinaryMetrics& m);

}  // namespace lockstep::train

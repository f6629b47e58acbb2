#pragma once
// Internal: rank 0's progress lines and JSON-lines metrics file during fit().

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#include "lockstep/train/trainer.h"

namespace lockstep::train {

class Progress {
 public:
  Progress(const TrainerConfig& config, int rank);
  /// Opens config.metrics_path for appending on rank 0 (Error naming the path if it cannot).
  void open_metrics();

  /// Starts the clocks of one fit().
  void start();
  /// After each step: a progress line every config.log_every steps. `steps_run` counts the
  /// steps of this fit(), `next_step` is the step number after this one.
  /// `data_wait_s`: this rank's seconds waiting for batches so far in this fit().
  void on_step(uint64_t next_step, int64_t epoch, const StepSummary& summary, uint64_t steps_run,
               const EvalResult& last_eval, double data_wait_s);
  /// After the last step of an epoch: `samples` trained on in it, summed over ranks (logged, and
  /// written with the epoch's evaluation line).
  void on_epoch_end(int64_t epoch, uint64_t step, int64_t samples);
  /// After the held-out evaluation of an epoch.
  void on_eval(int64_t epoch, uint64_t step, const EvalResult& eval);
  /// Seconds since start().
  double elapsed() const;

 private:
  void write_metrics(const std::string& json_line);

  const TrainerConfig& config_;
  int rank_;
  std::ofstream metrics_;
  std::chrono::steady_clock::time_point t0_, last_log_;
  int64_t samples_since_log_ = 0, epoch_samples_ = 0, steps_since_log_ = 0;
  double wait_at_log_ = 0;
};

}  // namespace lockstep::train

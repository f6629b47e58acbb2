#pragma once
// What every rank learns from one lockstep step's collective.

#include <cstdint>
#include <vector>

namespace lockstep::train {

/// What all ranks agreed on after a step's all-reduce.
struct StepSummary {
  uint64_t step = 0;
  uint64_t samples = 0;      // Σ n_samples
  double loss_sum = 0.0;     // Σ loss_sum
  bool any_next = false;     // Σ has_next > 0
  bool stop_requested = false;
  std::vector<uint64_t> sparse_rows;  // per rank and table: rows[r * tables + t]
};

}  // namespace lockstep::train

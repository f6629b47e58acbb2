#pragma once
// Internal: the trainer's start-up check that every rank runs the same model and configuration.

#include <cstdint>
#include <string>

#include "lockstep/models/model.h"
#include "train/host_collectives.h"

namespace lockstep::train {

/// Compares, across ranks, hashes of the model name, the dense parameter layout, the embedding
/// tables, `run_config`, the trainer's `settings` and the initial dense parameters (one
/// collective; a second one on a mismatch). Throws the same JobError on every rank naming what
/// differs, on which ranks, and for texts of "key=value" lines (`run_config`, `settings`) the
/// first key whose values differ. Returns the hash of the model layout, the tables and
/// `run_config` (the run's configuration hash, checked again on resume).
uint64_t check_startup_consistency(HostCollectives& host, const Context& ctx,
                                   models::Model<float>& model, const std::string& run_config,
                                   const std::string& settings);

/// XXH64 over this rank's whole model state: dense values (parameters and state), the dense
/// optimizer's state, and every table's tensors (weights, optimizer state) in name order.
uint64_t model_state_hash(const Context& ctx, models::Model<float>& model);

}  // namespace lockstep::train

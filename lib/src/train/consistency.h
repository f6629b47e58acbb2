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

/// What the configuration hash of check_startup_consistency covers, as "key=value" lines (the
/// `run_config`, the model name, the dense layout's hash, one line per table): kept in checkpoints
/// (config.txt) so that a refused resume can name what changed.
std::string config_text(models::Model<float>& model, const std::string& run_config);

/// The first key whose value differs between two "key=value" texts (a repeated key compares
/// occurrence by occurrence), e.g. "--batch-size: '32' in the checkpoint, '16' in this run".
std::string describe_difference(const std::string& a, const std::string& where_a,
                                const std::string& b, const std::string& where_b);

/// XXH64 over this rank's whole model state: dense values (parameters and state), the dense
/// optimizer's state, and every table's tensors (weights, optimizer state) in name order.
uint64_t model_state_hash(const Context& ctx, models::Model<float>& model);

}  // namespace lockstep::train

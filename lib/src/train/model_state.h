#pragma once
// Internal: a model's whole state (dense values, dense optimizer, tables) as host tensors, for
// checkpoints and the trainer's in-memory best model.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lockstep/models/model.h"

namespace lockstep::train {

using HostTensors = std::map<std::string, std::vector<float>>;

/// The dense optimizer's state, named "optimizer.<name>".
HostTensors optimizer_tensors(models::Model<float>& model, const Context& ctx);
/// Every table's tensors ("<table>.weight", its optimizer state).
HostTensors table_tensors(models::Model<float>& model, const Context& ctx);
/// Restores what the two above produced (checked by the caller) and the optimizer step count.
void assign_optimizer_and_tables(models::Model<float>& model, const Context& ctx,
                                 const HostTensors& optimizer, int64_t optimizer_steps,
                                 const HostTensors& tables);

/// All of it, dense values (parameters and non-trainable state) included.
struct HostModelState {
  std::vector<float> dense;
  HostTensors optimizer, tables;
  int64_t optimizer_steps = 0;
};
HostModelState host_model_state(models::Model<float>& model, const Context& ctx);
void restore_host_model_state(models::Model<float>& model, const Context& ctx,
                              const HostModelState& state);

}  // namespace lockstep::train

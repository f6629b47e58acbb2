#include "train/model_state.h"

namespace lockstep::train {

HostTensors optimizer_tensors(models::Model<float>& model, const Context& ctx) {
  HostTensors out;
  for (auto& [name, tensor] : model.dense_optimizer().state())
    out["optimizer." + name] = to_host(ctx, *tensor);
  return out;
}

HostTensors table_tensors(models::Model<float>& model, const Context& ctx) {
  HostTensors out;
  for (auto* table : model.tables())
    for (auto& [name, values] : table->to_host(ctx)) out[name] = std::move(values);
  return out;
}

void assign_optimizer_and_tables(models::Model<float>& model, const Context& ctx,
                                 const HostTensors& optimizer, int64_t optimizer_steps,
                                 const HostTensors& tables) {
  for (auto& [name, tensor] : model.dense_optimizer().state()) {
    const auto& v = optimizer.at("optimizer." + name);
    copy_bytes(ctx, tensor->data(), ctx.device(), v.data(), Device::cpu(), v.size() * sizeof(float));
  }
  model.dense_optimizer().set_step_count(optimizer_steps);
  for (auto* table : model.tables()) table->from_host(ctx, tables);
}

HostModelState host_model_state(models::Model<float>& model, const Context& ctx) {
  HostModelState s;
  s.dense = to_host(ctx, model.dense_params().values(), model.dense_params().size());
  s.optimizer = optimizer_tensors(model, ctx);
  s.optimizer_steps = model.dense_optimizer().step_count();
  s.tables = table_tensors(model, ctx);
  return s;
}

void restore_host_model_state(models::Model<float>& model, const Context& ctx,
                              const HostModelState& s) {
  copy_bytes(ctx, model.dense_params().values(), ctx.device(), s.dense.data(), Device::cpu(),
             s.dense.size() * sizeof(float));
  assign_optimizer_and_tables(model, ctx, s.optimizer, s.optimizer_steps, s.tables);
}

}  // namespace lockstep::train

#pragma once
// Optimizer configuration and the fused dense optimizer over a ParamSet's flat buffer.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"

namespace lockstep::nn {

enum class OptimizerKind { Sgd, Adam, Adagrad };
/// "sgd", "adam", "adagrad".
const char* optimizer_name(OptimizerKind kind);
/// Throws Error naming `field` and the allowed names for anything else.
OptimizerKind parse_optimizer(std::string_view name, std::string_view field);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::Adam;
  float lr = 1e-3f;
  float momentum = 0.0f;             // sgd
  bool nesterov = false;             // sgd
  float beta1 = 0.9f;                // adam
  float beta2 = 0.999f;              // adam
  float eps = 1e-8f;                 // adam, adagrad
  float weight_decay = 0.0f;         // sgd: L2; adam: decoupled (AdamW); not used by adagrad
  float initial_accumulator = 0.0f;  // adagrad
  /// Throws Error naming `prefix`.<field> and its allowed range for a bad value.
  void validate(std::string_view prefix) const;
};

/// Applies one optimizer step to a flat buffer of n parameters: fused, one launch per step.
/// State (momentum / Adam moments / Adagrad accumulators) is allocated on the context's device.
template <class T>
class DenseOptimizer {
 public:
  DenseOptimizer(OptimizerConfig config, const Context& ctx, int64_t n);

  /// params -= update(grad_scale * grads). Increments step().
  void step(const Context& ctx, T* params, const T* grads, T grad_scale);
  /// The same for elements [begin, end) only (frozen parameters elsewhere keep their values and
  /// optimizer state exactly). Increments step().
  void step(const Context& ctx, T* params, const T* grads, T grad_scale, int64_t begin,
            int64_t end);

  int64_t step_count() const { return step_; }
  const OptimizerConfig& config() const { return config_; }
  /// Optimizer state tensors by name ("m", "v", "velocity", "accum"), for checkpoints.
  std::vector<std::pair<std::string, Tensor<T>*>> state();
  void set_step_count(int64_t step) { step_ = step; }

 private:
  OptimizerConfig config_;
  int64_t n_;
  int64_t step_ = 0;
  Tensor<T> s0_, s1_;
};

extern template class DenseOptimizer<float>;
extern template class DenseOptimizer<double>;

}  // namespace lockstep::nn

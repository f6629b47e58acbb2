#pragma once
// Internal: the interaction components of the dual DNN's teacher (docs/dual_dnn.md): each reads the
// shared input (pooled fields ⊕ dense, and the history) and writes its slice of the teacher's
// MLP input. One implementation per kind: fm, cross, din, bst.

#include <memory>
#include <string>

#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/models/dual_dnn.h"

namespace lockstep::models {

/// The shared input of one batch. x0: (B, W0) contiguous (ld0 = W0) — pooled fields ⊕ dense;
/// seq: (B, T, ws) history (position row stride ws), nullptr without sequence fields; batch:
/// the staged batch (history lengths).
template <class T>
struct TeacherInput {
  int64_t B = 0;
  const T* x0 = nullptr;
  int64_t ld0 = 0;
  const T* seq = nullptr;
  int64_t ws = 0;
  const DeviceBatch<T>* batch = nullptr;
};

/// Gradients of the shared input, in the layouts of TeacherInput; components ACCUMULATE (+=).
template <class T>
struct TeacherInputGrad {
  T* dx0 = nullptr;
  T* dseq = nullptr;
};

template <class T>
class TeacherComponent {
 public:
  virtual ~TeacherComponent() = default;
  virtual int64_t output_width() const = 0;
  /// out: (B, output_width()) row stride ldo (overwritten). training: inference mode when
  /// false (running statistics do not move, no dropout).
  virtual void forward(const Context& ctx, const TeacherInput<T>& in, T* out, int64_t ldo,
                       bool training) = 0;
  /// dout: (B, output_width()) row stride lddo. Accumulates into `grad` and the parameters'
  /// gradients.
  virtual void backward(const Context& ctx, const T* dout, int64_t lddo,
                        const TeacherInputGrad<T>& grad) = 0;
};

/// The component `kind` ("fm", "cross", "din" or "bst") of `config`, listed at `key`
/// ("model.teacher.components[1]"), its parameters added to `params` under "teacher.<kind>".
/// Errors are ConfigErrors naming the configuration key.
template <class T>
std::unique_ptr<TeacherComponent<T>> make_teacher_component(
    const std::string& kind, const std::string& key, const DualConfig& config,
    const embedding::EmbeddingBagCollection<T>& emb, nn::ParamSet<T>& params, int64_t shared_width);

}  // namespace lockstep::models

#pragma once
// Serving the student of a dual DNN from its exported bundle: embedding lookups and an MLP, and
// nothing of the teacher (no teacher code path, no teacher parameter in the bundle).

#include <memory>
#include <string>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/data/batch.h"

namespace lockstep::serving {

class StudentModel {
 public:
  /// Loads and verifies a bundle written by DualDnn::export_student (lockstep-train --export):
  /// a missing, truncated or corrupted file throws Error naming it.
  /// The model keeps a reference to `ctx` (its device, stream and workspace): `ctx` must outlive
  /// it. A temporary Context is refused at compile time.
  StudentModel(const std::string& dir, const Context& ctx);
  StudentModel(const std::string& dir, Context&& ctx) = delete;
  ~StudentModel();
  StudentModel(StudentModel&&) noexcept;

  /// Click probabilities σ(logit) for `batch`, whose sparse columns follow columns() (the
  /// training data's Batch order) and whose dense width is num_dense().
  std::vector<float> predict(const data::Batch& batch);

  const std::vector<std::string>& columns() const;
  int64_t num_dense() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::serving

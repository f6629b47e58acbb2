#pragma once
// Whole-model finite-difference gradient check under the BCE loss: the dense parameters and
// every table's weights of a double-precision model on one batch.

#include <vector>

#include "gradcheck.h"
#include "lockstep/core/context.h"
#include "lockstep/models/model.h"
#include "lockstep/nn/loss.h"
#include "table_grad.h"

namespace lockstep::test {

/// touched_rows_only: check only the table entries the batch gives a gradient (required to be
/// some); else every entry (the others must then be zero both ways).
inline void check_model_gradient(models::Model<double>& model, const data::Batch& batch,
                                 bool touched_rows_only) {
  Context ctx;
  const int64_t rows = batch.size;
  const std::vector<double> labels(batch.labels.begin(), batch.labels.end());
  nn::BceWithLogits<double> bce;
  std::vector<double> dlogits(rows);
  double loss_sum = 0;
  const auto loss = [&] {
    const double* z = model.forward(ctx, batch, true);
    bce.forward_backward(ctx, rows, z, labels.data(), 1.0, nullptr, &loss_sum);
    return loss_sum;
  };
  model.zero_grad(ctx);
  const double* z = model.forward(ctx, batch, true);
  bce.forward_backward(ctx, rows, z, labels.data(), 1.0, dlogits.data(), &loss_sum);
  model.backward(ctx, dlogits.data());
  auto& ps = model.dense_params();
  const std::vector<double> analytic(ps.grads(), ps.grads() + ps.size());
  // The loss is a sum over rows (~5): finite differences carry ~1e-16·L/h ≈ 5e-10 of rounding,
  // so errors are measured against a floor of 1e-3 (atol 5e-9).
  check_gradient("dense parameters", loss, ps.values(), analytic.data(), ps.size(),
                 trainable_indices(ps), 1e-6, 5e-6, 1e-3);
  for (auto* t : model.tables()) {
    const auto dense = dense_table_grad(*t);
    std::vector<int64_t> touched;
    if (touched_rows_only) {
      for (int64_t i = 0; i < t->rows() * t->dim(); ++i)
        if (dense[i] != 0.0) touched.push_back(i);
      REQUIRE(!touched.empty());
    }
    check_gradient(t->config().name, loss, t->weights(), dense.data(), t->rows() * t->dim(),
                   touched, 1e-6, 5e-6, 1e-3);
  }
}

}  // namespace lockstep::test

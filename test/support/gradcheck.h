#pragma once
// Central finite-difference gradient checks (double precision, CPU).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace lockstep::test {

/// dL/dvalues[i] ~ (L(values + h e_i) − L(values − h e_i)) / 2h for each i in `indices`;
/// `values` is perturbed in place and restored. Returns the estimates in the order of indices.
inline std::vector<double> central_difference(double* values, const std::vector<int64_t>& indices,
                                              const std::function<double()>& loss,
                                              double h = 1e-6) {
  std::vector<double> grad;
  grad.reserve(indices.size());
  for (int64_t i : indices) {
    const double saved = values[i];
    values[i] = saved + h;
    const double up = loss();
    values[i] = saved - h;
    const double down = loss();
    values[i] = saved;
    grad.push_back((up - down) / (2 * h));
  }
  return grad;
}

/// Every element of `param`.
template <class Loss>
std::vector<double> central_difference(std::vector<double>& param, Loss&& loss, double h = 1e-6) {
  std::vector<int64_t> all(param.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  return central_difference(param.data(), all, std::function<double()>(loss), h);
}

/// The random projection L = Σ_i w_i·y_i that turns an output into a scalar loss; its gradient
/// with respect to y is w.
inline double project(const std::vector<double>& w, const std::vector<double>& y) {
  double total = 0;
  for (size_t i = 0; i < w.size(); ++i) total += w[i] * y[i];
  return total;
}

/// Tolerances for comparing an analytic gradient with central_difference (h = 1e-6, double):
/// truncation error ~h², rounding error ~1e-16·|L|/h.
constexpr double kGradAtol = 1e-8;
constexpr double kGradRtol = 1e-6;

/// Compares analytic[i] with the central difference for each i in `indices` (all of [0, n) when
/// empty). The error measure is |a − fd| / max(|a| + |fd|, floor); the check fails above `tol`
/// and reports the worst entry. It also fails when every finite difference is ~0, since such a
/// check would prove nothing.
inline void check_gradient(const std::string& what, const std::function<double()>& loss,
                           double* values, const double* analytic, int64_t n,
                           std::vector<int64_t> indices = {}, double eps = 1e-6, double tol = 1e-6,
                           double floor = 1e-7) {
  INFO(what);
  if (indices.empty())
    for (int64_t i = 0; i < n; ++i) indices.push_back(i);
  const std::vector<double> fd = central_difference(values, indices, loss, eps);
  double worst = 0.0, max_abs = 0.0;
  size_t worst_k = 0;
  for (size_t k = 0; k < indices.size(); ++k) {
    const double a = analytic[indices[k]];
    const double err = std::abs(a - fd[k]) / std::max(std::abs(a) + std::abs(fd[k]), floor);
    max_abs = std::max(max_abs, std::abs(fd[k]));
    if (std::isnan(err) || err > worst) {
      worst = std::isnan(err) ? 1e300 : err;
      worst_k = k;
    }
  }
  INFO("worst relative error " << worst << " at index " << indices[worst_k] << ": analytic "
                               << analytic[indices[worst_k]] << ", finite difference "
                               << fd[worst_k]);
  CHECK(worst <= tol);
  CHECK(max_abs > 1e-6);
}

}  // namespace lockstep::test

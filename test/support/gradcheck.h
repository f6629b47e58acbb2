#pragma once
// Central finite-difference gradient checks (double precision, CPU).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace lockstep::test {

/// Compares analytic[i] with (L(x_i + eps) − L(x_i − eps)) / (2 eps) for each i in `indices`
/// (all of [0, n) when empty), perturbing values[i] in place and restoring it. The error measure
/// is |a − fd| / max(|a| + |fd|, floor); the check fails above `tol` and reports the worst entry.
inline void check_gradient(const std::string& what, const std::function<double()>& loss,
                           double* values, const double* analytic, int64_t n,
                           std::vector<int64_t> indices = {}, double eps = 1e-6,
                           double tol = 1e-6, double floor = 1e-7) {
  INFO(what);
  if (indices.empty())
    for (int64_t i = 0; i < n; ++i) indices.push_back(i);
  double worst = 0.0, worst_a = 0.0, worst_fd = 0.0, max_abs = 0.0;
  int64_t worst_i = -1;
  for (int64_t i : indices) {
    const double saved = values[i];
    values[i] = saved + eps;
    const double up = loss();
    values[i] = saved - eps;
    const double down = loss();
    values[i] = saved;
    const double fd = (up - down) / (2 * eps);
    const double a = analytic[i];
    const double err = std::abs(a - fd) / std::max(std::abs(a) + std::abs(fd), floor);
    max_abs = std::max(max_abs, std::abs(fd));
    if (err > worst || std::isnan(err)) {
      worst = std::isnan(err) ? 1e300 : err;
      worst_i = i;
      worst_a = a;
      worst_fd = fd;
    }
  }
  INFO("worst relative error " << worst << " at index " << worst_i << ": analytic " << worst_a
                               << ", finite difference " << worst_fd);
  CHECK(worst <= tol);
  // The check is meaningless when every gradient is zero: require a non-trivial signal.
  CHECK(max_abs > 1e-6);
}

}  // namespace lockstep::test

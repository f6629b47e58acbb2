#pragma once
// Central finite differences for the double-precision gradient checks of the CPU kernels.

#include <cstddef>
#include <vector>

namespace lockstep::test {

/// dL/dparam[i] ~ (L(param + h e_i) - L(param - h e_i)) / 2h for every i. `loss` is called with
/// no arguments and must read `param` (which is perturbed in place and restored).
template <class Loss>
std::vector<double> central_difference(std::vector<double>& param, Loss&& loss, double h = 1e-6) {
  std::vector<double> grad(param.size());
  for (size_t i = 0; i < param.size(); ++i) {
    const double saved = param[i];
    param[i] = saved + h;
    const double up = loss();
    param[i] = saved - h;
    const double down = loss();
    param[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/// The random projection L = sum_i w_i * y_i used to turn an output into a scalar loss; its
/// gradient with respect to y is w.
inline double project(const std::vector<double>& w, const std::vector<double>& y) {
  double total = 0;
  for (size_t i = 0; i < w.size(); ++i) total += w[i] * y[i];
  return total;
}

/// Tolerances for comparing an analytic gradient with central_difference (h = 1e-6, double):
/// truncation error ~h^2, rounding error ~1e-16 |L| / h.
constexpr double kGradAtol = 1e-8;
constexpr double kGradRtol = 1e-6;

}  // namespace lockstep::test

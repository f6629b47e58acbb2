// CPU reference of layer normalisation (kernels/layer_norm.h): the forward against a long-double
// reference with a different variance formula, numerical edge cases, the backward against
// central finite differences, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "gradcheck.h"
#include "kernels/layer_norm.h"
#include "lockstep/core/error.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {

/// Layer norm in long double with the variance as E[x²] − E[x]² (a different formula from the
/// kernel's two passes).
struct LayerNormReference {
  std::vector<long double> y, mean, rstd;
};
template <class T>
LayerNormReference layer_norm_reference(int64_t rows, int64_t n, double eps,
                                        const std::vector<T>& x, const std::vector<T>& gamma,
                                        const std::vector<T>& beta) {
  LayerNormReference ref;
  ref.y.resize(x.size());
  ref.mean.resize(rows);
  ref.rstd.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    long double s1 = 0, s2 = 0;
    for (int64_t j = 0; j < n; ++j) {
      const long double v = x[r * n + j];
      s1 += v;
      s2 += v * v;
    }
    const long double m = s1 / n, var = std::max(0.0L, s2 / n - m * m);
    ref.mean[r] = m;
    ref.rstd[r] = 1.0L / std::sqrt(var + eps);
    for (int64_t j = 0; j < n; ++j)
      ref.y[r * n + j] = (x[r * n + j] - m) * ref.rstd[r] * gamma[j] + beta[j];
  }
  return ref;
}

}  // namespace

// ==== Layer norm =============================================================================

TEMPLATE_TEST_CASE("layer_norm_forward matches the definition", "[kernels][attention]", float,
                   double) {
  using T = TestType;
  Context ctx;
  const T eps = T(1e-5);
  for (const auto& shape :
       std::vector<std::pair<int64_t, int64_t>>{{5, 7}, {1, 1}, {3, 32}, {2, 1000}}) {
    const int64_t rows = shape.first, n = shape.second;
    DYNAMIC_SECTION("rows " << rows << " n " << n) {
      const auto x = test::random_vector<T>(rows * n, 81 + n, -2.0, 3.0);
      const auto gamma = test::random_vector<T>(n, 82, 0.5, 1.5);
      const auto beta = test::random_vector<T>(n, 83);
      std::vector<T> y(rows * n, T(1e9)), mean(rows, T(1e9)), rstd(rows, T(1e9));
      kernels::layer_norm_forward<T>(ctx, rows, n, eps, x.data(), gamma.data(), beta.data(),
                                     y.data(), mean.data(), rstd.data());
      const auto ref = layer_norm_reference(rows, n, eps, x, gamma, beta);
      test::require_close(mean, ref.mean, fwd_tol<T>(), fwd_tol<T>(), "mean");
      test::require_close(rstd, ref.rstd, fwd_tol<T>(), fwd_tol<T>(), "rstd");
      test::require_close(y, ref.y, fwd_tol<T>(), fwd_tol<T>(), "y");
      REQUIRE(test::any_nonzero(y));
      // In place.
      auto inplace = x;
      kernels::layer_norm_forward<T>(ctx, rows, n, eps, inplace.data(), gamma.data(), beta.data(),
                                     inplace.data(), mean.data(), rstd.data());
      test::require_bitwise_equal(inplace, y, "layer norm in place");
    }
  }
}

TEMPLATE_TEST_CASE("layer_norm handles a constant row (variance 0) and a large offset",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t rows = 2, n = 8;
  const T eps = T(1e-5);
  std::vector<T> x(rows * n, T(3.25));  // row 0: constant
  const auto noise = test::random_vector<double>(n, 91, -0.1, 0.1);
  for (int64_t j = 0; j < n; ++j) x[n + j] = static_cast<T>(1e4 + noise[j]);  // row 1
  const auto gamma = test::random_vector<T>(n, 92, 0.5, 1.5);
  const auto beta = test::random_vector<T>(n, 93);
  std::vector<T> y(rows * n), mean(rows), rstd(rows);
  kernels::layer_norm_forward<T>(ctx, rows, n, eps, x.data(), gamma.data(), beta.data(), y.data(),
                                 mean.data(), rstd.data());
  CHECK(mean[0] == T(3.25));
  CHECK(static_cast<double>(rstd[0]) == Approx(1.0 / std::sqrt(double(eps))).epsilon(1e-6));
  for (int64_t j = 0; j < n; ++j) CHECK(y[j] == beta[j]);  // x − mean is exactly 0
  // Row 1: mean 1e4 and variance ~3e-3; E[x²] − E[x]² in float would lose every digit.
  const auto ref = layer_norm_reference(rows, n, eps, x, gamma, beta);
  const double tol = std::is_same_v<T, float> ? 1e-3 : 1e-9;
  CHECK(static_cast<double>(rstd[1]) == Approx(static_cast<double>(ref.rstd[1])).epsilon(tol));

  std::vector<T> dx(rows * n), dgamma(n, T(0)), dbeta(n, T(0));
  const auto dy = test::random_vector<T>(rows * n, 94);
  kernels::layer_norm_backward<T>(ctx, rows, n, x.data(), gamma.data(), mean.data(), rstd.data(),
                                  dy.data(), dx.data(), dgamma.data(), dbeta.data());
  for (const T v : dx) REQUIRE(std::isfinite(v));
  for (const T v : dgamma) REQUIRE(std::isfinite(v));
}

TEST_CASE("layer_norm_backward matches central differences for x, gamma and beta",
          "[kernels][attention]") {
  Context ctx;
  const int64_t rows = 4, n = 6;
  const double eps = 1e-5;
  auto x = test::random_vector<double>(rows * n, 101, -2.0, 2.0);
  auto gamma = test::random_vector<double>(n, 102, 0.5, 1.5);
  auto beta = test::random_vector<double>(n, 103);
  const auto proj = test::random_vector<double>(rows * n, 104);
  std::vector<double> y(rows * n), mean(rows), rstd(rows);
  const auto loss = [&] {
    kernels::layer_norm_forward<double>(ctx, rows, n, eps, x.data(), gamma.data(), beta.data(),
                                        y.data(), mean.data(), rstd.data());
    return project(proj, y);
  };
  loss();
  const auto mean_saved = mean, rstd_saved = rstd;
  const auto dgamma0 = test::random_vector<double>(n, 105),
             dbeta0 = test::random_vector<double>(n, 106);
  auto dgamma = dgamma0, dbeta = dbeta0;
  std::vector<double> dx(rows * n, 1e9);  // overwritten
  kernels::layer_norm_backward<double>(ctx, rows, n, x.data(), gamma.data(), mean_saved.data(),
                                       rstd_saved.data(), proj.data(), dx.data(), dgamma.data(),
                                       dbeta.data());
  std::vector<double> ggamma(n), gbeta(n);
  for (int64_t j = 0; j < n; ++j) {
    ggamma[j] = dgamma[j] - dgamma0[j];
    gbeta[j] = dbeta[j] - dbeta0[j];
  }
  check_gradient("layer_norm dx", loss, x.data(), dx.data(), rows * n);
  check_gradient("layer_norm dgamma", loss, gamma.data(), ggamma.data(), n);
  check_gradient("layer_norm dbeta", loss, beta.data(), gbeta.data(), n);

  // dx may alias dy; the parameter gradients are the same.
  auto inplace = proj;
  auto dgamma_in = dgamma0, dbeta_in = dbeta0;
  kernels::layer_norm_backward<double>(ctx, rows, n, x.data(), gamma.data(), mean_saved.data(),
                                       rstd_saved.data(), inplace.data(), inplace.data(),
                                       dgamma_in.data(), dbeta_in.data());
  test::require_bitwise_equal(inplace, dx, "layer norm dx in place");
  test::require_bitwise_equal(dgamma_in, dgamma, "dgamma with dx aliasing dy");
  test::require_bitwise_equal(dbeta_in, dbeta, "dbeta with dx aliasing dy");
}

// ==== Argument checks ========================================================================

TEST_CASE("layer_norm kernels reject bad sizes, strides and lengths naming the argument",
          "[kernels][layer_norm]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();

  // Layer norm.
  CHECK_THROWS_WITH(kernels::layer_norm_forward<float>(ctx, 2, -1, 1e-5f, f, f, f, f, f, f),
                    Contains("layer_norm_forward") && Contains("n = -1"));
  CHECK_THROWS_WITH(kernels::layer_norm_forward<float>(ctx, 2, 0, 1e-5f, f, f, f, f, f, f),
                    Contains("n = 0"));
  CHECK_THROWS_WITH(kernels::layer_norm_backward<float>(ctx, -2, 4, f, f, f, f, f, f, f, f),
                    Contains("layer_norm_backward") && Contains("rows = -2"));
}

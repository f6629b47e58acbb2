// CPU reference kernels of kernels/activation.h: forwards against independent formulas,
// backwards against central finite differences in double precision, accumulate/overwrite
// semantics, and the Dice statistics paths (inference, running averages, rows == 1 and 0).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "gradcheck.h"
#include "kernels/activation.h"
#include "test_util.h"

using namespace lockstep;
using test::central_difference;
using test::kGradAtol;
using test::kGradRtol;
using test::project;

namespace {

/// Uniform values in [-1, 1) moved at least `gap` away from 0, so that a finite-difference step
/// never crosses the kink of ReLU / LeakyReLU / PReLU.
std::vector<double> away_from_zero(size_t n, uint64_t seed, double gap = 0.05) {
  auto v = test::random_vector<double>(n, seed, -1.0, 1.0);
  for (auto& x : v) x = x >= 0 ? x + gap : x - gap;
  return v;
}

/// Relative tolerance for results a few roundings away from exact in type T.
template <class T>
constexpr double few_ulps() {
  return 8 * static_cast<double>(std::numeric_limits<T>::epsilon());
}

/// Dice forward in long double, written from the paper's definition rather than from the
/// kernel: variance as E[x^2] - E[x]^2, y = p * x + (1 - p) * alpha * x.
struct DiceReference {
  std::vector<long double> y, mean, var, p;
};
template <class T>
DiceReference dice_reference(int64_t rows, int64_t cols, double eps, const std::vector<T>& x,
                             const std::vector<T>& alpha) {
  DiceReference ref;
  ref.y.resize(x.size());
  ref.p.resize(x.size());
  ref.mean.resize(cols);
  ref.var.resize(cols);
  for (int64_t c = 0; c < cols; ++c) {
    long double s1 = 0, s2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const long double v = x[r * cols + c];
      s1 += v;
      s2 += v * v;
    }
    ref.mean[c] = s1 / rows;
    ref.var[c] = s2 / rows - ref.mean[c] * ref.mean[c];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * cols + c;
      const long double v = x[i];
      const long double p =
          1.0L / (1.0L + std::exp(-(v - ref.mean[c]) / std::sqrt(ref.var[c] + eps)));
      ref.p[i] = p;
      ref.y[i] = p * v + (1.0L - p) * alpha[c] * v;
    }
  }
  return ref;
}

}  // namespace

// ---- ReLU / LeakyReLU ------------------------------------------------------------------------

TEMPLATE_TEST_CASE("relu and leaky_relu follow their definitions, including x == 0",
                   "[kernels][activation]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t n = 67;
  auto x = test::random_vector<T>(n, 11, -3.0, 3.0);
  x[0] = T(0);
  x[1] = T(-40);
  x[2] = T(100);
  const auto dy = test::random_vector<T>(n, 12, 0.5, 1.5);  // no zeros: dx at x == 0 is visible
  const T slope = T(0.2);

  std::vector<T> y(n), y_leaky(n);
  kernels::relu_forward<T>(ctx, n, x.data(), y.data());
  kernels::leaky_relu_forward<T>(ctx, n, slope, x.data(), y_leaky.data());
  std::vector<T> y_ref(n), y_leaky_ref(n);
  for (int64_t i = 0; i < n; ++i) {
    y_ref[i] = (x[i] + std::abs(x[i])) / 2;         // exact in floating point
    y_leaky_ref[i] = std::max(x[i], slope * x[i]);  // for 0 < slope < 1
  }
  test::require_bitwise_equal(y, y_ref, "relu forward");
  test::require_bitwise_equal(y_leaky, y_leaky_ref, "leaky_relu forward");

  // dx overwrites: start from garbage.
  std::vector<T> dx(n, T(1234)), dx_leaky(n, T(1234));
  kernels::relu_backward<T>(ctx, n, x.data(), dy.data(), dx.data());
  kernels::leaky_relu_backward<T>(ctx, n, slope, x.data(), dy.data(), dx_leaky.data());
  for (int64_t i = 0; i < n; ++i) {
    INFO("i = " << i << ", x = " << x[i]);
    CHECK(dx[i] == (x[i] > 0 ? dy[i] : T(0)));
    CHECK(dx_leaky[i] == (x[i] > 0 ? dy[i] : slope * dy[i]));
  }
  // At the kink x == 0 the subgradient is the left one: 0 for ReLU, slope for LeakyReLU.
  CHECK(y[0] == T(0));
  CHECK(dx[0] == T(0));
  CHECK(dx_leaky[0] == slope * dy[0]);
  CHECK(dx_leaky[0] != T(0));
}

TEST_CASE("relu and leaky_relu backward match central differences", "[kernels][activation]") {
  Context ctx;
  const int64_t n = 5 * 7;
  auto x = away_from_zero(n, 21);
  const auto w = test::random_vector<double>(n, 22);
  const double slope = 0.3;
  std::vector<double> y(n);

  const auto fd_relu = central_difference(x, [&] {
    kernels::relu_forward<double>(ctx, n, x.data(), y.data());
    return project(w, y);
  });
  const auto fd_leaky = central_difference(x, [&] {
    kernels::leaky_relu_forward<double>(ctx, n, slope, x.data(), y.data());
    return project(w, y);
  });

  std::vector<double> dx(n, 99.0), dx_leaky(n, 99.0);
  kernels::relu_backward<double>(ctx, n, x.data(), w.data(), dx.data());
  kernels::leaky_relu_backward<double>(ctx, n, slope, x.data(), w.data(), dx_leaky.data());
  test::require_close(dx, fd_relu, kGradAtol, kGradRtol, "relu dx vs finite differences");
  test::require_close(dx_leaky, fd_leaky, kGradAtol, kGradRtol,
                      "leaky_relu dx vs finite differences");

  // dx may alias dy.
  auto inplace = w;
  kernels::relu_backward<double>(ctx, n, x.data(), inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, dx, "relu backward in place");
  inplace = w;
  kernels::leaky_relu_backward<double>(ctx, n, slope, x.data(), inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, dx_leaky, "leaky_relu backward in place");
}

// ---- Sigmoid ---------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("sigmoid forward is accurate and finite for any x", "[kernels][activation]",
                   float, double) {
  using T = TestType;
  Context ctx;
  auto x = test::random_vector<T>(100, 31, -8.0, 8.0);
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> extremes = {T(0),   T(40),   T(-40), T(100), T(-100),
                                   T(1e4), T(-1e4), inf,    -inf};
  const size_t first_extreme = x.size();
  x.insert(x.end(), extremes.begin(), extremes.end());
  const auto n = static_cast<int64_t>(x.size());

  std::vector<T> y(n);
  kernels::sigmoid_forward<T>(ctx, n, x.data(), y.data());
  std::vector<long double> ref(n);
  for (int64_t i = 0; i < n; ++i)
    ref[i] = 1.0L / (1.0L + std::exp(-static_cast<long double>(x[i])));
  for (int64_t i = 0; i < n; ++i) {
    INFO("x = " << x[i] << ", y = " << y[i]);
    REQUIRE(std::isfinite(y[i]));
    REQUIRE(y[i] >= T(0));
    REQUIRE(y[i] <= T(1));
  }
  // atol = smallest normal: sigmoid(-100) is subnormal in float.
  test::require_close(y, ref, std::numeric_limits<T>::min(), few_ulps<T>(),
                      "sigmoid vs 1/(1+exp(-x))");

  const T* e = y.data() + first_extreme;  // outputs for `extremes`, in order
  CHECK(e[0] == T(0.5));
  CHECK(e[1] == T(1));  // 1 - 4e-18 rounds to 1 in float and double
  CHECK(e[2] > T(4.2e-18));
  CHECK(e[2] < T(4.3e-18));
  CHECK(e[3] == T(1));
  CHECK(e[4] < T(1e-40));
  CHECK(e[5] == T(1));
  CHECK(e[7] == T(1));
  CHECK(e[8] == T(0));
}

TEST_CASE("sigmoid backward matches central differences", "[kernels][activation]") {
  Context ctx;
  const int64_t n = 6 * 5;
  auto x = test::random_vector<double>(n, 41, -4.0, 4.0);
  const auto w = test::random_vector<double>(n, 42);
  std::vector<double> y(n);
  const auto fd = central_difference(x, [&] {
    kernels::sigmoid_forward<double>(ctx, n, x.data(), y.data());
    return project(w, y);
  });
  kernels::sigmoid_forward<double>(ctx, n, x.data(), y.data());
  std::vector<double> dx(n, -7.0);
  kernels::sigmoid_backward<double>(ctx, n, y.data(), w.data(), dx.data());
  test::require_close(dx, fd, kGradAtol, kGradRtol, "sigmoid dx vs finite differences");

  auto inplace = w;
  kernels::sigmoid_backward<double>(ctx, n, y.data(), inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, dx, "sigmoid backward in place");
}

// ---- PReLU -----------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("prelu forward and backward at x == 0 follow the per-column definition",
                   "[kernels][activation]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t rows = 4, cols = 6;
  auto x = test::random_vector<T>(rows * cols, 51, -2.0, 2.0);
  x[0] = T(0);
  x[cols + 3] = T(0);
  const auto alpha = test::random_vector<T>(cols, 52, 0.05, 0.6);
  const auto dy = test::random_vector<T>(rows * cols, 53, 0.5, 1.5);

  std::vector<T> y(rows * cols);
  kernels::prelu_forward<T>(ctx, rows, cols, x.data(), alpha.data(), y.data());
  std::vector<T> y_ref(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const T v = x[r * cols + c];
      y_ref[r * cols + c] = std::max(v, T(0)) + alpha[c] * std::min(v, T(0));
    }
  test::require_close(y, y_ref, 0.0, few_ulps<T>(), "prelu forward");

  std::vector<T> dx(rows * cols, T(55)), dalpha(cols, T(0));
  kernels::prelu_backward<T>(ctx, rows, cols, x.data(), alpha.data(), dy.data(), dx.data(),
                             dalpha.data());
  // x == 0 takes the negative side: slope alpha for dx, and contributes x = 0 to dalpha.
  CHECK(dx[0] == alpha[0] * dy[0]);
  CHECK(dx[cols + 3] == alpha[3] * dy[cols + 3]);
  for (int64_t c = 0; c < cols; ++c) {
    long double expect = 0;
    for (int64_t r = 0; r < rows; ++r)
      if (!(x[r * cols + c] > 0))
        expect += static_cast<long double>(dy[r * cols + c]) * x[r * cols + c];
    INFO("column " << c);
    CHECK(static_cast<double>(dalpha[c]) ==
          Approx(static_cast<double>(expect)).epsilon(few_ulps<T>() * rows).margin(1e-30));
  }
}

TEST_CASE("prelu backward matches central differences and accumulates dalpha",
          "[kernels][activation]") {
  Context ctx;
  const int64_t rows = 5, cols = 7;
  auto x = away_from_zero(rows * cols, 61);
  auto alpha = test::random_vector<double>(cols, 62, -0.3, 0.7);
  const auto w = test::random_vector<double>(rows * cols, 63);
  std::vector<double> y(rows * cols);
  const auto loss = [&] {
    kernels::prelu_forward<double>(ctx, rows, cols, x.data(), alpha.data(), y.data());
    return project(w, y);
  };
  const auto fd_x = central_difference(x, loss);
  const auto fd_alpha = central_difference(alpha, loss);

  // dalpha starts from existing values (another consumer's contribution); dx from garbage.
  const auto dalpha0 = test::random_vector<double>(cols, 64, -2.0, 2.0);
  auto dalpha = dalpha0;
  std::vector<double> dx(rows * cols, 1e9);
  kernels::prelu_backward<double>(ctx, rows, cols, x.data(), alpha.data(), w.data(), dx.data(),
                                  dalpha.data());
  test::require_close(dx, fd_x, kGradAtol, kGradRtol, "prelu dx vs finite differences");
  std::vector<double> expect_dalpha(cols);
  for (int64_t c = 0; c < cols; ++c) expect_dalpha[c] = dalpha0[c] + fd_alpha[c];
  test::require_close(dalpha, expect_dalpha, kGradAtol, kGradRtol,
                      "prelu dalpha == previous value + finite differences");

  // dx may alias dy; dalpha is the same either way.
  auto inplace = w;
  auto dalpha_inplace = dalpha0;
  kernels::prelu_backward<double>(ctx, rows, cols, x.data(), alpha.data(), inplace.data(),
                                  inplace.data(), dalpha_inplace.data());
  test::require_bitwise_equal(inplace, dx, "prelu dx in place");
  test::require_bitwise_equal(dalpha_inplace, dalpha, "prelu dalpha with dx aliasing dy");
}

// ---- Dice ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("dice_forward_train matches the definition with batch statistics",
                   "[kernels][activation][dice]", float, double) {
  using T = TestType;
  Context ctx;
  const T eps = T(1e-5);
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{6, 5}, {33, 3}, {2, 4}}) {
    const int64_t rows = shape.first, cols = shape.second;
    DYNAMIC_SECTION("rows " << rows << " cols " << cols) {
      auto x = test::random_vector<T>(rows * cols, 71 + rows, -2.0, 2.0);
      x[1] = T(0);
      const auto alpha = test::random_vector<T>(cols, 72, -0.5, 0.8);
      std::vector<T> y(rows * cols), mean(cols), var(cols), p(rows * cols);
      kernels::dice_forward_train<T>(ctx, rows, cols, eps, x.data(), alpha.data(), y.data(),
                                     mean.data(), var.data(), p.data());
      const auto ref = dice_reference(rows, cols, eps, x, alpha);
      test::require_close(mean, ref.mean, tol, tol, "batch mean");
      test::require_close(var, ref.var, tol, tol, "biased batch variance");
      test::require_close(p, ref.p, tol, tol, "p");
      test::require_close(y, ref.y, tol, tol, "y");
    }
  }
}

TEST_CASE("dice_forward_train with one row: zero variance, p = 1/2",
          "[kernels][activation][dice]") {
  Context ctx;
  const int64_t cols = 4;
  const std::vector<double> x = {1.5, -2.0, 0.25, 7.0}, alpha = {0.1, 0.2, -0.3, 0.9};
  std::vector<double> y(cols), mean(cols, -9.0), var(cols, -9.0), p(cols, -9.0);
  kernels::dice_forward_train<double>(ctx, 1, cols, 1e-8, x.data(), alpha.data(), y.data(),
                                      mean.data(), var.data(), p.data());
  for (int64_t c = 0; c < cols; ++c) {
    INFO("column " << c);
    CHECK(mean[c] == x[c]);
    CHECK(var[c] == 0.0);
    CHECK(p[c] == 0.5);
    CHECK(y[c] == Approx(x[c] * (alpha[c] + 0.5 * (1 - alpha[c]))).epsilon(1e-15));
  }
}

TEST_CASE("dice backward (training mode) matches central differences through the batch statistics",
          "[kernels][activation][dice]") {
  Context ctx;
  const double eps = 1e-5;
  for (const auto& shape :
       std::vector<std::pair<int64_t, int64_t>>{{6, 5}, {17, 3}, {3, 2}, {1, 4}}) {
    const int64_t rows = shape.first, cols = shape.second;
    DYNAMIC_SECTION("rows " << rows << " cols " << cols) {
      auto x = test::random_vector<double>(rows * cols, 81 + rows, -2.0, 2.0);
      auto alpha = test::random_vector<double>(cols, 82, -0.5, 0.8);
      const auto w = test::random_vector<double>(rows * cols, 83 + rows);
      std::vector<double> y(rows * cols), mean(cols), var(cols), p(rows * cols);
      // The statistics are recomputed for every perturbed x: this differentiates through them.
      const auto loss = [&] {
        kernels::dice_forward_train<double>(ctx, rows, cols, eps, x.data(), alpha.data(), y.data(),
                                            mean.data(), var.data(), p.data());
        return project(w, y);
      };
      const auto fd_x = central_difference(x, loss);
      const auto fd_alpha = central_difference(alpha, loss);

      kernels::dice_forward_train<double>(ctx, rows, cols, eps, x.data(), alpha.data(), y.data(),
                                          mean.data(), var.data(), p.data());
      const auto dalpha0 = test::random_vector<double>(cols, 84, -1.0, 1.0);
      auto dalpha = dalpha0;
      std::vector<double> dx(rows * cols, 3e7);
      kernels::dice_backward<double>(ctx, rows, cols, eps, x.data(), alpha.data(), mean.data(),
                                     var.data(), p.data(), w.data(), dx.data(), dalpha.data());
      test::require_close(dx, fd_x, kGradAtol, kGradRtol, "dice dx vs finite differences");
      std::vector<double> expect_dalpha(cols);
      for (int64_t c = 0; c < cols; ++c) expect_dalpha[c] = dalpha0[c] + fd_alpha[c];
      test::require_close(dalpha, expect_dalpha, kGradAtol, kGradRtol,
                          "dice dalpha == previous value + finite differences");

      if (rows > 1) {
        // The batch-statistics term matters: dropping it (p held fixed) gives another gradient.
        double worst = 0;
        for (int64_t i = 0; i < rows * cols; ++i) {
          const int64_t c = i % cols;
          const double direct = w[i] * (alpha[c] + p[i] * (1 - alpha[c]));
          worst = std::max(worst, std::abs(direct - fd_x[i]));
        }
        CHECK(worst > 1e-3);
      }

      auto inplace = w;
      auto dalpha_inplace = dalpha0;
      kernels::dice_backward<double>(ctx, rows, cols, eps, x.data(), alpha.data(), mean.data(),
                                     var.data(), p.data(), inplace.data(), inplace.data(),
                                     dalpha_inplace.data());
      test::require_bitwise_equal(inplace, dx, "dice dx in place");
      test::require_bitwise_equal(dalpha_inplace, dalpha, "dice dalpha with dx aliasing dy");
    }
  }
}

TEMPLATE_TEST_CASE("dice_forward_infer uses the running statistics", "[kernels][activation][dice]",
                   float, double) {
  using T = TestType;
  Context ctx;
  SECTION("hand-computed values") {
    // eps = 1, running var 3: scale 1/2. Column 0: xhat = (3 - 1)/2 = 1; column 1: (-1 - 1)/2 = -1.
    // y = x * (alpha + p * (1 - alpha)), p = 1/(1 + e^-xhat), alpha = 1/4.
    const std::vector<T> x = {3, -1}, alpha = {0.25, 0.25}, rmean = {1, 1}, rvar = {3, 3};
    std::vector<T> y(2);
    kernels::dice_forward_infer<T>(ctx, 1, 2, T(1), x.data(), alpha.data(), rmean.data(),
                                   rvar.data(), y.data());
    CHECK(static_cast<double>(y[0]) == Approx(2.394881801917511).epsilon(few_ulps<T>()));
    CHECK(static_cast<double>(y[1]) == Approx(-0.4517060660274963).epsilon(few_ulps<T>()));
  }
  SECTION("random inputs against the definition") {
    const int64_t rows = 9, cols = 5;
    const T eps = T(1e-3);
    const auto x = test::random_vector<T>(rows * cols, 91, -3.0, 3.0);
    const auto alpha = test::random_vector<T>(cols, 92, -0.5, 0.8);
    const auto rmean = test::random_vector<T>(cols, 93, -0.5, 0.5);
    const auto rvar = test::random_vector<T>(cols, 94, 0.2, 2.0);
    std::vector<T> y(rows * cols);
    kernels::dice_forward_infer<T>(ctx, rows, cols, eps, x.data(), alpha.data(), rmean.data(),
                                   rvar.data(), y.data());
    std::vector<long double> ref(rows * cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const long double v = x[r * cols + c];
        const long double p =
            1.0L /
            (1.0L + std::exp(-(v - rmean[c]) / std::sqrt(static_cast<long double>(rvar[c]) + eps)));
        ref[r * cols + c] = p * v + (1 - p) * alpha[c] * v;
      }
    test::require_close(y, ref, std::is_same_v<T, float> ? 1e-6 : 1e-14, 4 * few_ulps<T>(),
                        "dice inference");

    // With the batch statistics as running statistics, inference reproduces training.
    std::vector<T> y_train(rows * cols), mean(cols), var(cols), p(rows * cols),
        y_infer(rows * cols);
    kernels::dice_forward_train<T>(ctx, rows, cols, eps, x.data(), alpha.data(), y_train.data(),
                                   mean.data(), var.data(), p.data());
    kernels::dice_forward_infer<T>(ctx, rows, cols, eps, x.data(), alpha.data(), mean.data(),
                                   var.data(), y_infer.data());
    test::require_close(y_infer, y_train, 0.0, few_ulps<T>(),
                        "inference with batch statistics == training");
  }
}

TEMPLATE_TEST_CASE("dice_update_running: momentum average with the unbiased variance",
                   "[kernels][activation][dice]", float, double) {
  using T = TestType;
  Context ctx;
  const T momentum = T(0.9);
  SECTION("four rows") {
    // Column 0: 1, 2, 3, 6 -> mean 3, biased var 14/4, unbiased 14/3.
    // Column 1: 0, 0, 0, 4 -> mean 1, biased var 12/4, unbiased 4.
    const std::vector<T> x = {1, 0, 2, 0, 3, 0, 6, 4}, alpha = {0.1, 0.1};
    std::vector<T> y(8), mean(2), var(2), p(8);
    kernels::dice_forward_train<T>(ctx, 4, 2, T(1e-5), x.data(), alpha.data(), y.data(),
                                   mean.data(), var.data(), p.data());
    CHECK(mean[0] == T(3));
    CHECK(mean[1] == T(1));
    CHECK(var[0] == T(3.5));
    CHECK(var[1] == T(3));
    std::vector<T> rmean = {0.5, -1}, rvar = {2, 1};
    kernels::dice_update_running<T>(ctx, 4, 2, momentum, mean.data(), var.data(), rmean.data(),
                                    rvar.data());
    const double tol = few_ulps<T>();
    CHECK(static_cast<double>(rmean[0]) == Approx(0.9 * 0.5 + 0.1 * 3).epsilon(tol));
    CHECK(static_cast<double>(rmean[1]) == Approx(0.9 * -1 + 0.1 * 1).epsilon(tol));
    CHECK(static_cast<double>(rvar[0]) == Approx(0.9 * 2 + 0.1 * 14.0 / 3.0).epsilon(tol));
    CHECK(static_cast<double>(rvar[1]) == Approx(0.9 * 1 + 0.1 * 4).epsilon(tol));
  }
  SECTION("one row: the biased variance (0) is used") {
    const std::vector<T> mean = {5, -2}, var = {0, 0};
    std::vector<T> rmean = {1, 1}, rvar = {2, 3};
    kernels::dice_update_running<T>(ctx, 1, 2, momentum, mean.data(), var.data(), rmean.data(),
                                    rvar.data());
    const double tol = few_ulps<T>();
    CHECK(static_cast<double>(rmean[0]) == Approx(0.9 * 1 + 0.1 * 5).epsilon(tol));
    CHECK(static_cast<double>(rmean[1]) == Approx(0.9 * 1 + 0.1 * -2).epsilon(tol));
    CHECK(static_cast<double>(rvar[0]) == Approx(0.9 * 2).epsilon(tol));
    CHECK(static_cast<double>(rvar[1]) == Approx(0.9 * 3).epsilon(tol));
    CHECK(std::isfinite(rvar[0]));
  }
}

TEST_CASE("activations with no rows leave every output untouched", "[kernels][activation][dice]") {
  Context ctx;
  const int64_t cols = 3;
  const std::vector<double> alpha = {0.1, 0.2, 0.3};
  const std::vector<double> sentinel(cols, 42.0);
  std::vector<double> mean = sentinel, var = sentinel, rmean = sentinel, rvar = sentinel;
  std::vector<double> dalpha = sentinel;
  // Empty (rows, cols) matrices: no element may be read or written, so null pointers are fine.
  double* none = nullptr;
  kernels::dice_forward_train<double>(ctx, 0, cols, 1e-5, none, alpha.data(), none, mean.data(),
                                      var.data(), none);
  kernels::dice_update_running<double>(ctx, 0, cols, 0.9, mean.data(), var.data(), rmean.data(),
                                       rvar.data());
  kernels::dice_forward_infer<double>(ctx, 0, cols, 1e-5, none, alpha.data(), rmean.data(),
                                      rvar.data(), none);
  kernels::dice_backward<double>(ctx, 0, cols, 1e-5, none, alpha.data(), mean.data(), var.data(),
                                 none, none, none, dalpha.data());
  CHECK(mean == sentinel);
  CHECK(var == sentinel);
  CHECK(rmean == sentinel);
  CHECK(rvar == sentinel);
  CHECK(dalpha == sentinel);

  kernels::prelu_forward<double>(ctx, 0, cols, none, alpha.data(), none);
  kernels::prelu_backward<double>(ctx, 0, cols, none, alpha.data(), none, none, dalpha.data());
  CHECK(dalpha == sentinel);
  kernels::relu_forward<double>(ctx, 0, none, none);
  kernels::sigmoid_forward<double>(ctx, 0, none, none);
  kernels::leaky_relu_backward<double>(ctx, 0, 0.1, none, none, none);
}

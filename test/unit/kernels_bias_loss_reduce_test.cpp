// CPU reference kernels of kernels/bias.h, kernels/loss.h and kernels/reduce.h: forwards against
// independent formulas, gradients against central finite differences in double precision,
// accumulate semantics and empty inputs.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "gradcheck.h"
#include "kernels/bias.h"
#include "kernels/loss.h"
#include "kernels/reduce.h"
#include "test_util.h"

using namespace lockstep;
using test::central_difference;
using test::kGradAtol;
using test::kGradRtol;
using test::project;

// ---- Bias ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("bias_add broadcasts the bias over rows", "[kernels][bias]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t rows = 4, cols = 7;
  const auto y0 = test::random_vector<T>(rows * cols, 101);
  const auto bias = test::random_vector<T>(cols, 102, -3.0, 3.0);
  auto y = y0;
  kernels::bias_add<T>(ctx, rows, cols, bias.data(), y.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      INFO("r " << r << " c " << c);
      CHECK(y[r * cols + c] == y0[r * cols + c] + bias[c]);
    }

  // No rows: nothing is written (and the null matrix is never touched).
  kernels::bias_add<T>(ctx, 0, cols, bias.data(), static_cast<T*>(nullptr));
}

TEST_CASE("bias_grad is the gradient of bias_add and accumulates", "[kernels][bias]") {
  Context ctx;
  const int64_t rows = 6, cols = 5;
  const auto y0 = test::random_vector<double>(rows * cols, 111);
  auto bias = test::random_vector<double>(cols, 112);
  const auto w = test::random_vector<double>(rows * cols, 113);
  const auto fd = central_difference(bias, [&] {
    auto y = y0;
    kernels::bias_add<double>(ctx, rows, cols, bias.data(), y.data());
    return project(w, y);
  });
  const auto dbias0 = test::random_vector<double>(cols, 114, -5.0, 5.0);
  auto dbias = dbias0;
  kernels::bias_grad<double>(ctx, rows, cols, w.data(), dbias.data());
  std::vector<double> expect(cols);
  for (int64_t c = 0; c < cols; ++c) expect[c] = dbias0[c] + fd[c];
  test::require_close(dbias, expect, kGradAtol, kGradRtol,
                      "dbias == previous value + finite differences");

  // No rows: dbias keeps its value.
  auto untouched = dbias0;
  kernels::bias_grad<double>(ctx, 0, cols, static_cast<const double*>(nullptr), untouched.data());
  test::require_bitwise_equal(untouched, dbias0, "bias_grad with rows == 0");
}

TEMPLATE_TEST_CASE("bias_grad sums long columns accurately", "[kernels][bias]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t rows = 1000, cols = 3;
  const auto dy = test::random_vector<T>(rows * cols, 121);
  std::vector<T> dbias(cols, T(0.5));
  kernels::bias_grad<T>(ctx, rows, cols, dy.data(), dbias.data());
  std::vector<long double> ref(cols, 0.5L);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ref[c] += dy[r * cols + c];
  // float: one rounding of a double-precision sum; double: 1000 roundings in the sum itself.
  const double tol = std::is_same_v<T, float> ? 4 * std::numeric_limits<float>::epsilon() : 1e-12;
  test::require_close(dbias, ref, tol, tol, "column sums");
}

// ---- Binary cross-entropy with logits --------------------------------------------------------

TEMPLATE_TEST_CASE("bce_with_logits matches the definition and stays finite for any logit",
                   "[kernels][loss]", float, double) {
  using T = TestType;
  Context ctx;
  auto x = test::random_vector<T>(200, 131, -10.0, 10.0);
  auto t = test::random_vector<T>(200, 132, 0.0, 1.0);
  // (logit, label) pairs that reach every branch and the saturated regime.
  const std::vector<std::pair<double, double>> special = {
      {0, 0},   {0, 1},   {0, 0.3},  {40, 1},   {40, 0},     {-40, 1},    {-40, 0},
      {100, 1}, {100, 0}, {-100, 1}, {-100, 0}, {100, 0.25}, {-1e4, 0.5}, {1e4, 1}};
  const size_t first_special = x.size();
  for (const auto& [xv, tv] : special) {
    x.push_back(static_cast<T>(xv));
    t.push_back(static_cast<T>(tv));
  }
  const auto n = static_cast<int64_t>(x.size());
  const T scale = T(0.75);
  std::vector<T> loss(n, T(-1)), dlogits(n, T(-1));
  kernels::bce_with_logits<T>(ctx, n, x.data(), t.data(), scale, loss.data(), dlogits.data());

  // Independent form: -[t log s + (1 - t) log(1 - s)] with log s = -log1p(e^-x) and
  // log(1 - s) = -log1p(e^x), in long double (e^1e4 does not overflow there).
  std::vector<long double> loss_ref(n), dlogits_ref(n);
  for (int64_t i = 0; i < n; ++i) {
    const long double xv = x[i], tv = t[i];
    loss_ref[i] = tv * std::log1p(std::exp(-xv)) + (1 - tv) * std::log1p(std::exp(xv));
    dlogits_ref[i] = static_cast<long double>(scale) * (1 / (1 + std::exp(-xv)) - tv);
  }
  for (int64_t i = 0; i < n; ++i) {
    INFO("x = " << x[i] << ", t = " << t[i]);
    REQUIRE(std::isfinite(loss[i]));
    REQUIRE(std::isfinite(dlogits[i]));
    REQUIRE(loss[i] >= T(0));
  }
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  test::require_close(loss, loss_ref, tol, tol, "loss");
  test::require_close(dlogits, dlogits_ref, tol, tol, "dlogits");

  const T* l = loss.data() + first_special;  // outputs for `special`, in order
  const T* g = dlogits.data() + first_special;
  const double ln2 = std::log(2.0);
  CHECK(static_cast<double>(l[0]) == Approx(ln2).epsilon(1e-6));
  CHECK(static_cast<double>(l[1]) == Approx(ln2).epsilon(1e-6));
  CHECK(static_cast<double>(l[2]) == Approx(ln2).epsilon(1e-6));
  CHECK(g[0] == scale * T(0.5));
  // Confident and right: log1p(e^-40) ~ e^-40, a normal number in float too (log(1 + e) gives 0).
  CHECK(static_cast<double>(l[3]) == Approx(std::exp(-40.0)).epsilon(1e-5));
  CHECK(l[4] == T(40));  // confident and wrong: |x|
  CHECK(l[5] == T(40));
  CHECK(l[7] < T(1e-40));
  CHECK(l[8] == T(100));
  CHECK(l[9] == T(100));
  CHECK(l[10] < T(1e-40));
  CHECK(l[11] == T(75));
  CHECK(l[12] == T(5000));
  CHECK(l[13] == T(0));
  CHECK(g[7] == T(0));    // sigmoid(100) == 1 exactly in T
  CHECK(g[8] == scale);   // sigmoid(100) - 0
  CHECK(g[9] == -scale);  // sigmoid(-100) - 1
  CHECK(std::abs(g[10]) < T(1e-40));

  // Either output may be skipped; the other is unchanged by that.
  std::vector<T> loss_only(n), dlogits_only(n);
  kernels::bce_with_logits<T>(ctx, n, x.data(), t.data(), scale, loss_only.data(), nullptr);
  kernels::bce_with_logits<T>(ctx, n, x.data(), t.data(), scale, nullptr, dlogits_only.data());
  test::require_bitwise_equal(loss_only, loss, "loss without dlogits");
  test::require_bitwise_equal(dlogits_only, dlogits, "dlogits without loss");

  // No samples: nothing is touched.
  kernels::bce_with_logits<T>(ctx, 0, x.data(), t.data(), scale, static_cast<T*>(nullptr),
                              static_cast<T*>(nullptr));
}

TEST_CASE("bce_with_logits dlogits matches central differences", "[kernels][loss]") {
  Context ctx;
  const int64_t n = 40;
  auto x = test::random_vector<double>(n, 141, -6.0, 6.0);
  x[0] = 0;
  auto t = test::random_vector<double>(n, 142, 0.0, 1.0);
  t[1] = 0;
  t[2] = 1;
  const auto w = test::random_vector<double>(n, 143);
  std::vector<double> loss(n), dlogits(n);

  SECTION("per-sample weights: dL/dx_i = w_i * dlogits_i with grad_scale 1") {
    const auto fd = central_difference(x, [&] {
      kernels::bce_with_logits<double>(ctx, n, x.data(), t.data(), 1.0, loss.data(), nullptr);
      return project(w, loss);
    });
    kernels::bce_with_logits<double>(ctx, n, x.data(), t.data(), 1.0, nullptr, dlogits.data());
    for (int64_t i = 0; i < n; ++i) dlogits[i] *= w[i];
    test::require_close(dlogits, fd, kGradAtol, kGradRtol, "w * dlogits vs finite differences");
  }
  SECTION("grad_scale: L = grad_scale * sum(loss)") {
    const double scale = 1.0 / 4096;  // a typical 1 / global batch size
    const auto fd = central_difference(x, [&] {
      kernels::bce_with_logits<double>(ctx, n, x.data(), t.data(), 1.0, loss.data(), nullptr);
      double total = 0;
      for (double v : loss) total += v;
      return scale * total;
    });
    kernels::bce_with_logits<double>(ctx, n, x.data(), t.data(), scale, nullptr, dlogits.data());
    test::require_close(dlogits, fd, kGradAtol * scale, kGradRtol, "dlogits vs finite differences");
  }
}

// ---- Sum -------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("sum adds every element and gives exactly 0 for an empty input",
                   "[kernels][reduce]", float, double) {
  using T = TestType;
  Context ctx;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(10007)}) {
    DYNAMIC_SECTION("n = " << n) {
      const auto x = test::random_vector<T>(static_cast<size_t>(n), 151 + n, -1.0, 2.0);
      T out = T(7);  // sentinel: must be overwritten, also when n == 0
      kernels::sum<T>(ctx, n, x.data(), &out);
      long double ref = 0, magnitude = 0;
      for (const T v : x) {
        ref += v;
        magnitude += std::abs(static_cast<long double>(v));
      }
      if (n == 0) {
        CHECK(out == T(0));
        CHECK(!std::signbit(out));
      } else {
        const double eps = std::numeric_limits<T>::epsilon();
        test::require_close(std::vector<T>{out}, std::vector<long double>{ref},
                            1e-13 * static_cast<double>(magnitude), eps, "sum");
      }
    }
  }
}

TEST_CASE("sum_blocks adds the blocks in block order, element by element", "[kernels][reduce]") {
  Context ctx;
  // The order shows in float: (1e8 + 1) - 1e8 = 0, while 1e8 + (1 - 1e8) = 1 would not.
  const std::vector<float> x = {1e8f, 2.f, 1.f, 3.f, -1e8f, 4.f};  // 3 blocks of 2
  std::vector<float> out(2, -7.f);
  kernels::sum_blocks<float>(ctx, 2, 3, x.data(), out.data());
  CHECK(out[0] == (1e8f + 1.f) + -1e8f);
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 9.f);

  // Against a long-double-free restatement of the order, in place (out = block 0), and with one
  // block (a copy).
  const int64_t n = 1001;
  const int blocks = 5;
  auto y = test::random_vector<float>(static_cast<size_t>(n * blocks), 88, -3.0, 3.0);
  std::vector<float> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float t = y[static_cast<size_t>(i)];
    for (int b = 1; b < blocks; ++b) t = t + y[static_cast<size_t>(b * n + i)];
    want[static_cast<size_t>(i)] = t;
  }
  kernels::sum_blocks<float>(ctx, n, blocks, y.data(), y.data());
  test::require_bitwise_equal(std::vector<float>(y.begin(), y.begin() + n), want, "in place");
  std::vector<float> copy(static_cast<size_t>(n));
  kernels::sum_blocks<float>(ctx, n, 1, want.data(), copy.data());
  test::require_bitwise_equal(copy, want, "one block");
  CHECK_THROWS_AS(kernels::sum_blocks<float>(ctx, n, 0, want.data(), copy.data()), Error);
  CHECK_THROWS_AS(kernels::sum_blocks<float>(ctx, -1, 2, want.data(), copy.data()), Error);
}

// CPU reference of dropout (kernels/dropout.h): the mask against the header's formula, its
// statistics and determinism, p = 0, the backward against central finite differences with a
// fixed mask, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "gradcheck.h"
#include "kernels/dropout.h"
#include "lockstep/core/error.h"
#include "lockstep/core/philox.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {

/// The keep decision of the dropout contract, written from the header's formula.
bool dropout_keeps(uint64_t seed, uint64_t counter, float p) {
  return uniform01_from_u32(philox_u32(seed, kernels::kDropoutStream, counter)) >= p;
}

}  // namespace

// ==== Dropout ================================================================================

TEMPLATE_TEST_CASE(
    "dropout keeps about 1 - p, scales survivors by 1/(1-p), and follows the counter",
    "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t n = 100000;
  const float p = 0.3f;
  const uint64_t seed = 2024, offset = 1u << 20;
  auto x = test::random_vector<T>(n, 111, 0.5, 1.5);  // no zeros: a zero output means dropped
  x[7] = T(kNaN);  // NaN input: dropped gives 0, kept gives NaN; never poisons its neighbours
  std::vector<T> y(n);
  kernels::dropout_forward<T>(ctx, n, p, seed, nullptr, offset, x.data(), y.data());

  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = dropout_keeps(seed, offset + static_cast<uint64_t>(i), p);
    if (i == 7) {
      CHECK((keep ? std::isnan(y[i]) : y[i] == T(0)));
      continue;
    }
    kept += keep;
    INFO("i = " << i);
    if (!keep) {
      REQUIRE(y[i] == T(0));
    } else if constexpr (std::is_same_v<T, float>) {
      REQUIRE(y[i] == x[i] * (1.0f / (1.0f - p)));  // the float scale of the contract, bitwise
    } else {
      REQUIRE(y[i] == Approx(x[i] / (1.0 - static_cast<double>(p))).epsilon(1e-7));
    }
  }
  // Binomial(1e5, 0.7): standard deviation 0.0014 in the fraction; 0.01 is 7 sigma.
  CHECK(static_cast<double>(kept) / (n - 1) == Approx(1.0 - p).margin(0.01));

  // Deterministic in (seed, offset).
  std::vector<T> again(n);
  kernels::dropout_forward<T>(ctx, n, p, seed, nullptr, offset, x.data(), again.data());
  test::require_bitwise_equal(again, y, "same seed and offset");
  // The mask of element i is a function of offset + i only: a shifted window reproduces it.
  const int64_t shift = 1000;
  std::vector<T> window(n - shift);
  kernels::dropout_forward<T>(ctx, n - shift, p, seed, nullptr, offset + shift, x.data() + shift,
                              window.data());
  test::require_bitwise_equal(window, std::vector<T>(y.begin() + shift, y.end()),
                              "window at offset + shift");
  // Another offset or seed gives another mask: about 2 p (1 - p) = 42% of the entries differ.
  const auto differing = [&](uint64_t s, uint64_t o) {
    std::vector<T> z(n);
    kernels::dropout_forward<T>(ctx, n, p, s, nullptr, o, x.data(), z.data());
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += (z[i] == T(0)) != (y[i] == T(0));
    return static_cast<double>(count) / n;
  };
  CHECK(differing(seed, offset + n) == Approx(2 * p * (1 - p)).margin(0.02));
  CHECK(differing(seed + 1, offset) == Approx(2 * p * (1 - p)).margin(0.02));

  // In place, and the backward uses the same mask and scale.
  auto inplace = x;
  kernels::dropout_forward<T>(ctx, n, p, seed, nullptr, offset, inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, y, "dropout in place");
  std::vector<T> dx(n);
  kernels::dropout_backward<T>(ctx, n, p, seed, nullptr, offset, x.data(), dx.data());
  test::require_bitwise_equal(dx, y, "backward of dy = x equals the forward of x");
}

TEMPLATE_TEST_CASE("dropout with p = 0 copies exactly", "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  auto x = test::random_vector<T>(1001, 121);
  x[3] = T(kNaN);
  x[4] = std::numeric_limits<T>::infinity();
  std::vector<T> y(x.size(), T(5)), dx(x.size(), T(5));
  kernels::dropout_forward<T>(ctx, 1001, 0.0f, 9, nullptr, 0, x.data(), y.data());
  kernels::dropout_backward<T>(ctx, 1001, 0.0f, 9, nullptr, 0, x.data(), dx.data());
  test::require_bitwise_equal(y, x, "p = 0 forward");
  test::require_bitwise_equal(dx, x, "p = 0 backward");
}

TEST_CASE("dropout_backward with a fixed mask matches central differences",
          "[kernels][attention]") {
  Context ctx;
  const int64_t n = 40;
  const float p = 0.4f;
  auto x = test::random_vector<double>(n, 131);
  const auto proj = test::random_vector<double>(n, 132);
  std::vector<double> y(n);
  const auto loss = [&] {
    kernels::dropout_forward<double>(ctx, n, p, 77, nullptr, 5, x.data(), y.data());
    return project(proj, y);
  };
  std::vector<double> dx(n, 1e9);
  kernels::dropout_backward<double>(ctx, n, p, 77, nullptr, 5, proj.data(), dx.data());
  check_gradient("dropout dx", loss, x.data(), dx.data(), n);
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) dropped += dx[i] == 0.0;
  CHECK(dropped > 0);  // the mask is not trivial
  CHECK(dropped < n);
  auto inplace = proj;
  kernels::dropout_backward<double>(ctx, n, p, 77, nullptr, 5, inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, dx, "dropout backward in place");
}

// ==== Argument checks ========================================================================

TEST_CASE("dropout kernels reject bad sizes, strides and lengths naming the argument",
          "[kernels][dropout]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();

  // Dropout.
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, 4, 1.0f, 0, nullptr, 0, f, f),
                    Contains("dropout_forward") && Contains("p = 1"));
  CHECK_THROWS_WITH(kernels::dropout_backward<float>(ctx, 4, -0.1f, 0, nullptr, 0, f, f),
                    Contains("dropout_backward") && Contains("p = -0.1"));
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, 4, std::nanf(""), 0, nullptr, 0, f, f),
                    Contains("p = nan"));
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, -4, 0.5f, 0, nullptr, 0, f, f),
                    Contains("n = -4"));
}

// CPU reference of the masked softmax and the padding mask (kernels/softmax.h): the softmax
// against a long-double reference, its stability for large inputs, the backward against central
// finite differences, exact zeros on masked entries, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gradcheck.h"
#include "kernels/softmax.h"
#include "lockstep/core/error.h"
#include "sequence_lengths.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {

/// y = softmax over the first lengths[r / group] entries of each row, 0 elsewhere.
template <class T>
std::vector<long double> softmax_reference(int64_t rows, int64_t n, int64_t group,
                                           const std::vector<int64_t>& lengths,
                                           const std::vector<T>& x) {
  std::vector<long double> y(static_cast<size_t>(rows * n), 0.0L);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t len = lengths[r / group];
    if (len == 0) continue;
    long double mx = -std::numeric_limits<long double>::infinity();
    for (int64_t j = 0; j < len; ++j) mx = std::max(mx, static_cast<long double>(x[r * n + j]));
    long double z = 0;
    for (int64_t j = 0; j < len; ++j) z += std::exp(static_cast<long double>(x[r * n + j]) - mx);
    for (int64_t j = 0; j < len; ++j)
      y[r * n + j] = std::exp(static_cast<long double>(x[r * n + j]) - mx) / z;
  }
  return y;
}

}  // namespace

// ==== Masked softmax =========================================================================

TEMPLATE_TEST_CASE("masked_softmax_forward is a softmax over the valid entries, zero elsewhere",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t samples, group, n;
  };
  for (const auto& s : std::vector<Shape>{{5, 3, 7}, {1, 1, 1}, {4, 8 * 21, 21}, {3, 2, 1024}}) {
    DYNAMIC_SECTION("samples " << s.samples << " group " << s.group << " n " << s.n) {
      const int64_t rows = s.samples * s.group;
      const auto lengths = test_lengths(s.samples, s.n, 51 + s.n);
      auto x = test::random_vector<T>(rows * s.n, 52, -5.0, 5.0);
      for (int64_t r = 0; r < rows; ++r)  // masked entries must not be read
        for (int64_t j = lengths[r / s.group]; j < s.n; ++j) x[r * s.n + j] = T(kNaN);
      std::vector<T> y(x.size(), T(kSentinel));
      kernels::masked_softmax_forward<T>(ctx, rows, s.n, s.group, lengths.data(), x.data(),
                                         y.data());
      const auto ref = softmax_reference(rows, s.n, s.group, lengths, x);
      test::require_close(y, ref, fwd_tol<T>() * 0.01, fwd_tol<T>(), "softmax vs reference");
      REQUIRE(test::any_nonzero(y));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t len = lengths[r / s.group];
        long double total = 0;
        for (int64_t j = 0; j < s.n; ++j) {
          if (j >= len) REQUIRE(y[r * s.n + j] == T(0));  // exact zeros, no NaN, no sentinel
          total += y[r * s.n + j];
        }
        CHECK(static_cast<double>(total) ==
              Approx(len > 0 ? 1.0 : 0.0).margin(fwd_tol<T>() * std::sqrt(double(s.n))));
      }

      // In place (y aliases x): the same bits.
      auto inplace = x;
      kernels::masked_softmax_forward<T>(ctx, rows, s.n, s.group, lengths.data(), inplace.data(),
                                         inplace.data());
      test::require_bitwise_equal(inplace, y, "softmax in place");
    }
  }
}

TEMPLATE_TEST_CASE("masked_softmax_forward with a row count that is no multiple of group",
                   "[kernels][softmax]", float, double) {
  // The last sample has fewer than `group` rows; lengths has ceil(rows / group) entries.
  using T = TestType;
  Context ctx;
  const int64_t rows = 11, group = 4, n = 6;
  const std::vector<int64_t> lengths = {2, 0, 6};  // rows 8..10 belong to sample 2
  auto x = test::random_vector<T>(rows * n, 57, -5.0, 5.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = lengths[r / group]; j < n; ++j) x[r * n + j] = T(kNaN);
  std::vector<T> y(static_cast<size_t>((rows + 1) * n), T(kSentinel));  // one row past the end
  kernels::masked_softmax_forward<T>(ctx, rows, n, group, lengths.data(), x.data(), y.data());
  for (int64_t j = 0; j < n; ++j) REQUIRE(y[rows * n + j] == T(kSentinel));
  y.resize(static_cast<size_t>(rows * n));
  const auto ref = softmax_reference(rows, n, group, lengths, x);
  test::require_close(y, ref, fwd_tol<T>() * 0.01, fwd_tol<T>(), "softmax vs reference");
  for (int64_t r = 8; r < rows; ++r) {
    long double total = 0;
    for (int64_t j = 0; j < n; ++j) total += y[r * n + j];
    CHECK(static_cast<double>(total) == Approx(1.0).epsilon(1e-5));
  }
}

TEMPLATE_TEST_CASE("masked_softmax_forward is stable for inputs of magnitude 1e4",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t rows = 4, n = 6;
  const std::vector<int64_t> lengths = {6, 3, 1, 5};
  const std::vector<T> x = {T(1e4),  T(-1e4),    T(9999), T(0),       T(1e4),  T(-3),
                            T(-1e4), T(-1e4),    T(-1e4), T(5),       T(5),    T(5),
                            T(-1e4), T(7),       T(7),    T(7),       T(7),    T(7),
                            T(1e4),  T(1e4 - 1), T(-1e4), T(1e4 - 2), T(-1e4), T(0)};
  std::vector<T> y(x.size());
  kernels::masked_softmax_forward<T>(ctx, rows, n, 1, lengths.data(), x.data(), y.data());
  for (const T v : y) REQUIRE(std::isfinite(v));
  const auto ref = softmax_reference(rows, n, 1, lengths, x);
  test::require_close(y, ref, 1e-7, fwd_tol<T>(), "softmax at +-1e4");
  // Row 1: three equal valid entries; row 2: a single valid entry is exactly 1.
  CHECK(static_cast<double>(y[n + 0]) == Approx(1.0 / 3).epsilon(fwd_tol<T>()));
  CHECK(y[2 * n] == T(1));
}

TEST_CASE("masked_softmax_backward matches central differences, masked entries get zero",
          "[kernels][attention]") {
  Context ctx;
  const int64_t samples = 4, group = 2, n = 5, rows = samples * group;
  const std::vector<int64_t> lengths = {0, 1, 5, 3};
  auto x = test::random_vector<double>(rows * n, 61, -2.0, 2.0);
  const auto proj = test::random_vector<double>(rows * n, 62);
  std::vector<double> y(rows * n);
  const auto loss = [&] {
    kernels::masked_softmax_forward<double>(ctx, rows, n, group, lengths.data(), x.data(),
                                            y.data());
    return project(proj, y);
  };
  loss();
  const auto y_saved = y;
  std::vector<double> dx(rows * n, 555.0);  // overwritten
  kernels::masked_softmax_backward<double>(ctx, rows, n, y_saved.data(), proj.data(), dx.data());
  check_gradient("masked_softmax dx", loss, x.data(), dx.data(), rows * n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = lengths[r / group]; j < n; ++j) REQUIRE(dx[r * n + j] == 0.0);

  // dy at masked entries does not leak into the valid ones (NaN there changes nothing).
  auto dy_nan = proj;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = lengths[r / group]; j < n; ++j) dy_nan[r * n + j] = kNaN;
  std::vector<double> dx_nan(rows * n);
  kernels::masked_softmax_backward<double>(ctx, rows, n, y_saved.data(), dy_nan.data(),
                                           dx_nan.data());
  test::require_bitwise_equal(dx_nan, dx, "softmax backward with NaN dy at masked entries");

  // dx may alias dy.
  auto inplace = proj;
  kernels::masked_softmax_backward<double>(ctx, rows, n, y_saved.data(), inplace.data(),
                                           inplace.data());
  test::require_bitwise_equal(inplace, dx, "softmax backward in place");
}

TEST_CASE("masked_softmax_backward in float agrees with double precision", "[kernels][attention]") {
  Context ctx;
  const int64_t rows = 3 * 8 * 21, n = 21, group = 8 * 21;
  const auto lengths = test_lengths(3, n, 63);
  const auto x = test::random_vector<float>(rows * n, 64, -3.0, 3.0);
  const auto dy = test::random_vector<float>(rows * n, 65);
  std::vector<float> yf(rows * n), dxf(rows * n);
  kernels::masked_softmax_forward<float>(ctx, rows, n, group, lengths.data(), x.data(), yf.data());
  kernels::masked_softmax_backward<float>(ctx, rows, n, yf.data(), dy.data(), dxf.data());
  const auto yd = to_double(yf), dyd = to_double(dy);
  std::vector<double> dxd(rows * n);
  kernels::masked_softmax_backward<double>(ctx, rows, n, yd.data(), dyd.data(), dxd.data());
  test::require_close(dxf, dxd, 1e-6, 1e-5, "softmax dx float vs double");
  REQUIRE(test::any_nonzero(dxf));
}

// ==== Padding mask ===========================================================================

TEMPLATE_TEST_CASE("mask_positions zeroes exactly the padding positions", "[kernels][attention]",
                   float, double) {
  using T = TestType;
  Context ctx;
  const int64_t B = 6, Tn = 5, W = 3, ld = 5;
  const auto lengths = test_lengths(B, Tn, 71);
  const auto x0 = strided_random<T>(B * Tn, W, ld, 72, kSentinel, 0.5, 1.5);  // no zeros
  auto x = x0;
  kernels::mask_positions<T>(ctx, B, Tn, W, lengths.data(), x.data(), ld);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t c = 0; c < ld; ++c) {
        const int64_t i = (b * Tn + t) * ld + c;
        INFO("b " << b << " t " << t << " c " << c << " length " << lengths[b]);
        REQUIRE(x[i] == (t >= lengths[b] && c < W ? T(0) : x0[i]));
      }
}

// ==== Argument checks ========================================================================

TEST_CASE(
    "masked softmax and padding mask kernels reject bad sizes, strides and lengths naming the "
    "argument",
    "[kernels][softmax]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();
  const std::vector<int64_t> good = {1, 2, 3}, too_long = {1, 4, 2};

  // Masked softmax: lengths are checked against n, one per sample of `group` rows.
  CHECK_THROWS_WITH(
      kernels::masked_softmax_forward<float>(ctx, 6, 3, 2, too_long.data(), f, f),
      Contains("masked_softmax_forward") && Contains("lengths[1] = 4") && Contains("n = 3"));
  CHECK_THROWS_WITH(kernels::masked_softmax_forward<float>(ctx, 6, 3, 0, good.data(), f, f),
                    Contains("group = 0"));
  CHECK_THROWS_WITH(kernels::masked_softmax_forward<float>(ctx, -6, 3, 2, good.data(), f, f),
                    Contains("rows = -6"));
  CHECK_THROWS_WITH(kernels::masked_softmax_backward<float>(ctx, 6, -3, f, f, f),
                    Contains("masked_softmax_backward") && Contains("n = -3"));

  // Padding mask.
  CHECK_THROWS_WITH(kernels::mask_positions<float>(ctx, 3, 3, 4, good.data(), f, 3),
                    Contains("mask_positions") && Contains("ld = 3") && Contains("W = 4"));
  CHECK_THROWS_WITH(kernels::mask_positions<float>(ctx, 3, 2, 4, good.data(), f, 4),
                    Contains("lengths[2] = 3") && Contains("T = 2"));
}

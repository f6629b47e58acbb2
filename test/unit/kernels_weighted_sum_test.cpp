// CPU reference of the masked weighted sum (kernels/weighted_sum.h): the forward against direct
// loops, the backward against central finite differences in double precision, exact zeros on
// padding, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "kernels/weighted_sum.h"
#include "lockstep/core/error.h"
#include "sequence_lengths.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using namespace lockstep::test;

// ==== Masked weighted sum ====================================================================

TEMPLATE_TEST_CASE("weighted_sum_forward sums the valid positions only", "[kernels][attention]",
                   float, double) {
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t B, Tn, D, ldx, ldo;
  };
  for (const auto& s :
       std::vector<Shape>{{6, 7, 5, 8, 7}, {1, 1, 1, 1, 1}, {1, 9, 3, 3, 4}, {9, 50, 32, 32, 40}}) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " D " << s.D) {
      const auto lengths = test_lengths(s.B, s.Tn, 31 + s.B);
      auto x = strided_random<T>(s.B * s.Tn, s.D, s.ldx, 32, kNaN);
      auto w = test::random_vector<T>(s.B * s.Tn, 33);
      // Padding positions hold NaN in x and w: a kernel that reads them produces NaN.
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = lengths[b]; t < s.Tn; ++t) {
          w[b * s.Tn + t] = T(kNaN);
          for (int64_t d = 0; d < s.D; ++d) x[(b * s.Tn + t) * s.ldx + d] = T(kNaN);
        }
      std::vector<T> out(s.B * s.ldo, T(kSentinel));
      kernels::weighted_sum_forward<T>(ctx, s.B, s.Tn, s.D, lengths.data(), w.data(), x.data(),
                                       s.ldx, out.data(), s.ldo);
      std::vector<long double> ref(out.size(), kSentinel);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t d = 0; d < s.D; ++d) {
          long double acc = 0;
          for (int64_t t = 0; t < lengths[b]; ++t)
            acc += static_cast<long double>(w[b * s.Tn + t]) * x[(b * s.Tn + t) * s.ldx + d];
          ref[b * s.ldo + d] = acc;
        }
      test::require_close(out, ref, fwd_tol<T>(), fwd_tol<T>(), "weighted sum vs direct loop");
      REQUIRE(test::any_nonzero(out));
      if (s.B > 1) {  // sample 0 has length 0: an exact zero row
        for (int64_t d = 0; d < s.D; ++d) CHECK(out[d] == T(0));
      }
    }
  }
}

TEST_CASE("weighted_sum_backward matches central differences, padding gets exactly zero",
          "[kernels][attention]") {
  Context ctx;
  const int64_t B = 5, Tn = 4, D = 3, ldx = 5, ldo = 4, lddo = 6, lddx = 7;
  const std::vector<int64_t> lengths = {0, 1, 4, 2, 3};
  auto w = test::random_vector<double>(B * Tn, 41);
  auto x = strided_random<double>(B * Tn, D, ldx, 42);
  const auto proj = test::random_vector<double>(B * D, 43);
  std::vector<double> out(B * ldo);
  const auto loss = [&] {
    kernels::weighted_sum_forward<double>(ctx, B, Tn, D, lengths.data(), w.data(), x.data(), ldx,
                                          out.data(), ldo);
    double total = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) total += proj[b * D + d] * out[b * ldo + d];
    return total;
  };
  // dout = proj with row stride lddo.
  std::vector<double> dout(B * lddo, kNaN);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) dout[b * lddo + d] = proj[b * D + d];

  std::vector<double> dw(B * Tn, 777.0);  // overwritten, padding included
  const auto dx0 = strided_random<double>(B * Tn, D, lddx, 44);
  auto dx = dx0;
  kernels::weighted_sum_backward<double>(ctx, B, Tn, D, lengths.data(), w.data(), x.data(), ldx,
                                         dout.data(), lddo, dw.data(), dx.data(), lddx);
  require_padding_untouched(dx, B * Tn, D, lddx, kSentinel, "dx stride padding");
  std::vector<double> gx(x.size(), 0.0);
  for (int64_t r = 0; r < B * Tn; ++r)
    for (int64_t d = 0; d < D; ++d) gx[r * ldx + d] = dx[r * lddx + d] - dx0[r * lddx + d];
  check_gradient("weighted_sum dw", loss, w.data(), dw.data(), B * Tn);
  check_gradient("weighted_sum dx", loss, x.data(), gx.data(), 0, strided_indices(B * Tn, D, ldx));

  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = lengths[b]; t < Tn; ++t) {
      INFO("padding position b " << b << " t " << t);
      REQUIRE(dw[b * Tn + t] == 0.0);
      for (int64_t d = 0; d < D; ++d)
        REQUIRE(dx[(b * Tn + t) * lddx + d] == dx0[(b * Tn + t) * lddx + d]);
    }

  // dx may be null: dw unchanged.
  std::vector<double> dw_only(B * Tn, 777.0);
  kernels::weighted_sum_backward<double>(ctx, B, Tn, D, lengths.data(), w.data(), x.data(), ldx,
                                         dout.data(), lddo, dw_only.data(), nullptr, 0);
  test::require_bitwise_equal(dw_only, dw, "dw without dx");
}

// ==== Argument checks ========================================================================

TEST_CASE("weighted_sum kernels reject bad sizes, strides and lengths naming the argument",
          "[kernels][weighted_sum]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();
  const std::vector<int64_t> good = {1, 2, 3}, too_long = {1, 4, 2}, negative = {1, -1, 0};

  // Weighted sum.
  CHECK_THROWS_WITH(
      kernels::weighted_sum_forward<float>(ctx, 3, 3, 2, too_long.data(), f, f, 2, f, 2),
      Contains("weighted_sum_forward") && Contains("lengths[1] = 4") && Contains("T = 3"));
  CHECK_THROWS_WITH(
      kernels::weighted_sum_forward<float>(ctx, 3, 3, 2, negative.data(), f, f, 2, f, 2),
      Contains("lengths[1] = -1"));
  CHECK_THROWS_WITH(kernels::weighted_sum_forward<float>(ctx, 3, 3, 2, good.data(), f, f, 1, f, 2),
                    Contains("ldx = 1"));
  CHECK_THROWS_WITH(kernels::weighted_sum_forward<float>(ctx, 3, 3, 2, good.data(), f, f, 2, f, 1),
                    Contains("ldo = 1"));
  CHECK_THROWS_WITH(
      kernels::weighted_sum_backward<float>(ctx, 3, 3, 2, good.data(), f, f, 2, f, 1, f, f, 2),
      Contains("weighted_sum_backward") && Contains("lddo = 1"));
  CHECK_THROWS_WITH(
      kernels::weighted_sum_backward<float>(ctx, 3, 3, 2, good.data(), f, f, 2, f, 2, f, f, 1),
      Contains("lddx = 1"));
  CHECK_THROWS_WITH(
      kernels::weighted_sum_backward<float>(ctx, 3, 3, 2, too_long.data(), f, f, 2, f, 2, f, f, 2),
      Contains("lengths[1] = 4"));
}

// CPU reference kernels of kernels/interaction.h (FM bi-interaction, DCN cross layer, squared
// error): forwards against independent naive formulas written here in long double (FM as the
// explicit pairwise sum Σ_{f<g} v_f ⊙ v_g, not the kernel's square-of-sum form), backwards
// against central finite differences in double precision (including a three-layer cross
// network whose input reaches every layer through x0 and the first layer through xl as well),
// accumulate/overwrite semantics, the dxl == dy alias, strided inputs with untouched padding,
// size-1 / odd / empty shapes, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "gradcheck.h"
#include "strided.h"
#include "kernels/interaction.h"
#include "lockstep/core/error.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {



// ---- Independent references (long double) ---------------------------------------------------

/// FM by its pairwise definition: out[b, d] = Σ_{f<g} v[b, f, d] · v[b, g, d], as (B, D).
template <class T>
std::vector<long double> fm_pairwise_reference(int64_t B, int64_t F, int64_t D,
                                               const std::vector<T>& v, int64_t ldv) {
  std::vector<long double> out(static_cast<size_t>(B * D), 0.0L);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t g = f + 1; g < F; ++g)
        for (int64_t d = 0; d < D; ++d)
          out[b * D + d] +=
              static_cast<long double>(v[b * ldv + f * D + d]) * v[b * ldv + g * D + d];
  return out;
}

/// The FM second-order term of each sample, Σ_{f<g} <v_f, v_g> (dot products of field vectors).
template <class T>
std::vector<long double> fm_second_order_term(int64_t B, int64_t F, int64_t D,
                                              const std::vector<T>& v, int64_t ldv) {
  std::vector<long double> term(static_cast<size_t>(B), 0.0L);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t g = f + 1; g < F; ++g) {
        long double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += static_cast<long double>(v[b * ldv + f * D + d]) * v[b * ldv + g * D + d];
        term[b] += dot;
      }
  return term;
}

}  // namespace

// ==== FM bi-interaction ======================================================================

struct FmShape {
  int64_t B, F, D, ldv, ldo;
};

TEMPLATE_TEST_CASE("fm_forward equals the pairwise sum over fields and sums to the FM term",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  // dual-bench (F = 7, D = 16), batch 1, one field, one dimension, odd sizes, wide strides.
  const std::vector<FmShape> shapes = {{1, 1, 1, 1, 1},    {1, 7, 16, 112, 16}, {3, 7, 16, 115, 19},
                                       {5, 4, 3, 12, 3},   {2, 3, 1, 5, 2},     {4, 1, 5, 5, 5},
                                       {1, 39, 8, 312, 8}, {6, 13, 11, 150, 12}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("B " << s.B << " F " << s.F << " D " << s.D << " ldv " << s.ldv << " ldo "
                         << s.ldo) {
      // Stride padding of v holds NaN: a kernel reading it would poison out.
      const auto v = strided_random<T>(s.B, s.F * s.D, s.ldv, 100 + s.B * s.F + s.D, kNaN);
      std::vector<T> out(static_cast<size_t>(s.B * s.ldo), T(kSentinel));  // overwritten
      kernels::fm_forward<T>(ctx, s.B, s.F, s.D, v.data(), s.ldv, out.data(), s.ldo);
      require_padding_untouched(out, s.B, s.D, s.ldo, kSentinel, "out stride padding");
      const auto got = unstride(out, s.B, s.D, s.ldo);
      const auto ref = fm_pairwise_reference(s.B, s.F, s.D, v, s.ldv);
      // (Σ v)² and Σ v² are ~F: the cancellation costs up to F roundings of that size.
      const double tol = fwd_tol<T>() * static_cast<double>(s.F);
      test::require_close(got, ref, tol, tol, "fm out vs pairwise sum");
      if (s.F == 1) {  // no pair of fields: exactly zero (written over the sentinel)
        for (const T x : got) REQUIRE(x == T(0));
      } else {
        REQUIRE(test::any_nonzero(got));
      }

      // Summing out over d gives the FM second-order term of each sample.
      const auto term = fm_second_order_term(s.B, s.F, s.D, v, s.ldv);
      std::vector<long double> summed(static_cast<size_t>(s.B), 0.0L);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t d = 0; d < s.D; ++d) summed[b] += got[b * s.D + d];
      test::require_close(summed, term, tol * s.D, tol, "Σ_d out vs Σ_{f<g} <v_f, v_g>");
    }
  }
}

TEMPLATE_TEST_CASE("fm_forward with no fields writes zeros; empty batches are no-ops",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  std::vector<T> out(6, T(kSentinel));
  kernels::fm_forward<T>(ctx, 2, 0, 3, nullptr, 0, out.data(), 3);
  CHECK(out == std::vector<T>(6, T(0)));

  std::vector<T> untouched(4, T(3));
  kernels::fm_forward<T>(ctx, 0, 7, 16, nullptr, 112, untouched.data(), 16);
  kernels::fm_forward<T>(ctx, 3, 7, 0, nullptr, 0, untouched.data(), 0);
  kernels::fm_backward<T>(ctx, 0, 7, 16, nullptr, 112, nullptr, 16, untouched.data(), 112);
  kernels::fm_backward<T>(ctx, 3, 0, 16, nullptr, 0, nullptr, 16, untouched.data(), 0);
  kernels::fm_backward<T>(ctx, 3, 7, 0, nullptr, 0, nullptr, 0, untouched.data(), 0);
  CHECK(untouched == std::vector<T>(4, T(3)));
}

TEMPLATE_TEST_CASE("fm_backward adds dout times the sum of the other fields",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t B, F, D, ldv, lddo, lddv;
  };
  for (const auto& s : std::vector<Shape>{{1, 1, 1, 1, 1, 1},
                                          {4, 1, 3, 4, 5, 3},
                                          {3, 7, 16, 112, 16, 112},
                                          {5, 4, 3, 13, 4, 15},
                                          {1, 9, 5, 45, 5, 46}}) {
    DYNAMIC_SECTION("B " << s.B << " F " << s.F << " D " << s.D) {
      const int64_t W = s.F * s.D;
      const auto v = strided_random<T>(s.B, W, s.ldv, 200 + s.B + s.F, kNaN);
      const auto dout = strided_random<T>(s.B, s.D, s.lddo, 201 + s.D, kNaN);
      const auto dv0 = strided_random<T>(s.B, W, s.lddv, 202);  // accumulates onto these
      auto dv = dv0;
      kernels::fm_backward<T>(ctx, s.B, s.F, s.D, v.data(), s.ldv, dout.data(), s.lddo, dv.data(),
                              s.lddv);
      require_padding_untouched(dv, s.B, W, s.lddv, kSentinel, "dv stride padding");
      // Reference written as a sum over the other fields g != f (not Σ_g − v_f).
      std::vector<long double> ref(static_cast<size_t>(s.B * W));
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t f = 0; f < s.F; ++f)
          for (int64_t d = 0; d < s.D; ++d) {
            long double others = 0;
            for (int64_t g = 0; g < s.F; ++g)
              if (g != f) others += v[b * s.ldv + g * s.D + d];
            ref[b * W + f * s.D + d] = static_cast<long double>(dv0[b * s.lddv + f * s.D + d]) +
                                       static_cast<long double>(dout[b * s.lddo + d]) * others;
          }
      const auto got = unstride(dv, s.B, W, s.lddv);
      const double tol = fwd_tol<T>() * s.F;
      test::require_close(got, ref, tol, tol, "dv vs dv0 + dout · Σ_{g≠f} v_g");
      if (s.F == 1)  // the gradient is exactly zero: dv keeps its bits
        test::require_bitwise_equal(dv, dv0, "dv with a single field");
    }
  }
}

TEST_CASE("fm_backward matches central differences", "[kernels][interaction]") {
  Context ctx;
  struct Shape {
    int64_t B, F, D, ldv, lddo, lddv;
  };
  for (const auto& s : std::vector<Shape>{{3, 4, 5, 23, 7, 21},
                                          {1, 2, 1, 2, 1, 2},
                                          {1, 7, 16, 112, 16, 112},
                                          {2, 3, 3, 10, 4, 11}}) {
    DYNAMIC_SECTION("B " << s.B << " F " << s.F << " D " << s.D) {
      const int64_t W = s.F * s.D;
      auto v = strided_random<double>(s.B, W, s.ldv, 300 + W, kNaN);
      const auto proj = test::random_vector<double>(static_cast<size_t>(s.B * s.D), 301 + s.B);
      std::vector<double> out(static_cast<size_t>(s.B * s.D));
      const auto loss = [&] {
        kernels::fm_forward<double>(ctx, s.B, s.F, s.D, v.data(), s.ldv, out.data(), s.D);
        return project(proj, out);
      };
      // dout = proj with row stride lddo; its padding is NaN (must not be read).
      std::vector<double> dout(static_cast<size_t>(s.B * s.lddo), kNaN);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t d = 0; d < s.D; ++d) dout[b * s.lddo + d] = proj[b * s.D + d];
      const auto dv0 = strided_random<double>(s.B, W, s.lddv, 302);
      auto dv = dv0;
      kernels::fm_backward<double>(ctx, s.B, s.F, s.D, v.data(), s.ldv, dout.data(), s.lddo,
                                   dv.data(), s.lddv);
      // The analytic gradient is the increment, laid out like v.
      std::vector<double> gv(v.size(), 0.0);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t i = 0; i < W; ++i)
          gv[b * s.ldv + i] = dv[b * s.lddv + i] - dv0[b * s.lddv + i];
      check_gradient("fm dv", loss, v.data(), gv.data(), 0, strided_indices(s.B, W, s.ldv));
    }
  }
}

// ==== DCN cross layer ========================================================================

namespace {

/// y = x0 · (xl · w) + b + xl per row, and s = xl · w, in long double.
template <class T>
void cross_reference(int64_t B, int64_t n, const std::vector<T>& x0, const std::vector<T>& xl,
                     const std::vector<T>& w, const std::vector<T>& bias,
                     std::vector<long double>& y, std::vector<long double>& s) {
  y.assign(static_cast<size_t>(B * n), 0.0L);
  s.assign(static_cast<size_t>(B), 0.0L);
  for (int64_t r = 0; r < B; ++r) {
    long double dot = 0;
    for (int64_t j = 0; j < n; ++j) dot += static_cast<long double>(xl[r * n + j]) * w[j];
    s[r] = dot;
    for (int64_t j = 0; j < n; ++j)
      y[r * n + j] = static_cast<long double>(x0[r * n + j]) * dot + bias[j] + xl[r * n + j];
  }
}

struct CrossShape {
  int64_t B, n;
};

}  // namespace

TEMPLATE_TEST_CASE("cross_forward equals x0 (xl . w) + b + xl", "[kernels][interaction]", float,
                   double) {
  using T = TestType;
  Context ctx;
  for (const auto& s :
       std::vector<CrossShape>{{1, 1}, {1, 152}, {5, 7}, {33, 152}, {4, 33}, {7, 1}}) {
    DYNAMIC_SECTION("B " << s.B << " n " << s.n) {
      const auto x0 = test::random_vector<T>(static_cast<size_t>(s.B * s.n), 400 + s.B);
      const auto xl = test::random_vector<T>(static_cast<size_t>(s.B * s.n), 401 + s.n);
      const auto w = test::random_vector<T>(static_cast<size_t>(s.n), 402, -0.5, 0.5);
      const auto bias = test::random_vector<T>(static_cast<size_t>(s.n), 403);
      // |s| ~ sqrt(n) / 3: the absolute tolerance grows with the length of the dot product.
      const double tol = fwd_tol<T>() * std::sqrt(static_cast<double>(s.n)) * 4;
      std::vector<long double> y_ref, s_ref;

      std::vector<T> y(static_cast<size_t>(s.B * s.n), T(kSentinel)),
          sv(static_cast<size_t>(s.B), T(kSentinel));
      kernels::cross_forward<T>(ctx, s.B, s.n, x0.data(), xl.data(), w.data(), bias.data(),
                                y.data(), sv.data());
      cross_reference(s.B, s.n, x0, xl, w, bias, y_ref, s_ref);
      test::require_close(sv, s_ref, tol, tol, "cross s");
      test::require_close(y, y_ref, tol, tol, "cross y");
      REQUIRE(test::any_nonzero(sv));

      // The first layer: xl is x0 itself (the same pointer).
      kernels::cross_forward<T>(ctx, s.B, s.n, x0.data(), x0.data(), w.data(), bias.data(),
                                y.data(), sv.data());
      cross_reference(s.B, s.n, x0, x0, w, bias, y_ref, s_ref);
      test::require_close(sv, s_ref, tol, tol, "cross s, xl == x0");
      test::require_close(y, y_ref, tol, tol, "cross y, xl == x0");
    }
  }
}

TEMPLATE_TEST_CASE("cross layer with n == 0 gives s = 0; empty batches are no-ops",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  std::vector<T> sv(3, T(kSentinel));
  kernels::cross_forward<T>(ctx, 3, 0, nullptr, nullptr, nullptr, nullptr, nullptr, sv.data());
  CHECK(sv == std::vector<T>(3, T(0)));

  std::vector<T> untouched(4, T(3));
  T* u = untouched.data();
  kernels::cross_forward<T>(ctx, 0, 5, nullptr, nullptr, nullptr, nullptr, nullptr, u);
  kernels::cross_backward<T>(ctx, 0, 5, nullptr, nullptr, nullptr, nullptr, nullptr, u, u, u, u);
  kernels::cross_backward<T>(ctx, 3, 0, nullptr, nullptr, nullptr, nullptr, nullptr, u, u, u, u);
  CHECK(untouched == std::vector<T>(4, T(3)));
}

TEMPLATE_TEST_CASE("cross_backward follows its formulas: dxl overwritten, the rest accumulated",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  for (const auto& s : std::vector<CrossShape>{{1, 1}, {1, 152}, {5, 7}, {67, 152}, {3, 33}}) {
    DYNAMIC_SECTION("B " << s.B << " n " << s.n) {
      const size_t Bn = static_cast<size_t>(s.B * s.n);
      const auto x0 = test::random_vector<T>(Bn, 500 + s.B);
      const auto xl = test::random_vector<T>(Bn, 501 + s.n);
      const auto w = test::random_vector<T>(static_cast<size_t>(s.n), 502, -0.5, 0.5);
      const auto sv = test::random_vector<T>(static_cast<size_t>(s.B), 503, -2.0, 2.0);  // input
      const auto dy = test::random_vector<T>(Bn, 504);
      const auto dx0_0 = test::random_vector<T>(Bn, 505);
      const auto dw0 = test::random_vector<T>(static_cast<size_t>(s.n), 506);
      const auto db0 = test::random_vector<T>(static_cast<size_t>(s.n), 507);
      auto dx0 = dx0_0, dw = dw0, db = db0;
      std::vector<T> dxl(Bn, T(1e9));  // overwritten: its start must not leak in
      kernels::cross_backward<T>(ctx, s.B, s.n, x0.data(), xl.data(), w.data(), sv.data(),
                                 dy.data(), dx0.data(), dxl.data(), dw.data(), db.data());

      std::vector<long double> dx0_ref(Bn), dxl_ref(Bn), dw_ref(dw0.begin(), dw0.end()),
          db_ref(db0.begin(), db0.end());
      for (int64_t r = 0; r < s.B; ++r) {
        long double ds = 0;
        for (int64_t j = 0; j < s.n; ++j)
          ds += static_cast<long double>(dy[r * s.n + j]) * x0[r * s.n + j];
        for (int64_t j = 0; j < s.n; ++j) {
          const int64_t i = r * s.n + j;
          dx0_ref[i] = static_cast<long double>(dx0_0[i]) + static_cast<long double>(dy[i]) * sv[r];
          dxl_ref[i] = static_cast<long double>(dy[i]) + ds * w[j];
          dw_ref[j] += ds * xl[i];
          db_ref[j] += dy[i];
        }
      }
      const double root_n = std::sqrt(static_cast<double>(s.n)),
                   root_B = std::sqrt(static_cast<double>(s.B));
      // ds ~ sqrt(n); dw sums B terms of size ~ds, db sums B terms of size ~1.
      test::require_close(dx0, dx0_ref, fwd_tol<T>() * 4, fwd_tol<T>() * 4, "dx0");
      test::require_close(dxl, dxl_ref, fwd_tol<T>() * 4 * root_n, fwd_tol<T>() * 4, "dxl");
      test::require_close(dw, dw_ref, fwd_tol<T>() * 4 * root_n * root_B, fwd_tol<T>() * 4, "dw");
      test::require_close(db, db_ref, fwd_tol<T>() * 4 * root_B, fwd_tol<T>() * 4, "db");

      // dxl may alias dy (a gradient buffer updated in place): the same bits.
      auto inplace = dy;
      auto dx0_a = dx0_0, dw_a = dw0, db_a = db0;
      kernels::cross_backward<T>(ctx, s.B, s.n, x0.data(), xl.data(), w.data(), sv.data(),
                                 inplace.data(), dx0_a.data(), inplace.data(), dw_a.data(),
                                 db_a.data());
      test::require_bitwise_equal(inplace, dxl, "dxl written over dy");
      test::require_bitwise_equal(dx0_a, dx0, "dx0 with dxl == dy");
      test::require_bitwise_equal(dw_a, dw, "dw with dxl == dy");
      test::require_bitwise_equal(db_a, db, "db with dxl == dy");
    }
  }
}

TEST_CASE("cross_backward matches central differences for x0, xl, w and b",
          "[kernels][interaction]") {
  Context ctx;
  for (const auto& s : std::vector<CrossShape>{{3, 5}, {1, 1}, {1, 7}, {4, 2}}) {
    DYNAMIC_SECTION("B " << s.B << " n " << s.n) {
      const size_t Bn = static_cast<size_t>(s.B * s.n);
      auto x0 = test::random_vector<double>(Bn, 600 + s.B);
      auto xl = test::random_vector<double>(Bn, 601 + s.n);
      auto w = test::random_vector<double>(static_cast<size_t>(s.n), 602);
      auto bias = test::random_vector<double>(static_cast<size_t>(s.n), 603);
      const auto proj = test::random_vector<double>(Bn, 604);
      std::vector<double> y(Bn), sv(static_cast<size_t>(s.B));
      const auto loss = [&] {
        kernels::cross_forward<double>(ctx, s.B, s.n, x0.data(), xl.data(), w.data(), bias.data(),
                                       y.data(), sv.data());
        return project(proj, y);
      };
      loss();  // s for the backward

      const auto dx0_0 = test::random_vector<double>(Bn, 605);
      const auto dw0 = test::random_vector<double>(static_cast<size_t>(s.n), 606);
      const auto db0 = test::random_vector<double>(static_cast<size_t>(s.n), 607);
      auto dx0 = dx0_0, dw = dw0, db = db0;
      std::vector<double> dxl(Bn, 1e9);
      kernels::cross_backward<double>(ctx, s.B, s.n, x0.data(), xl.data(), w.data(), sv.data(),
                                      proj.data(), dx0.data(), dxl.data(), dw.data(), db.data());
      std::vector<double> gx0(Bn), gw(static_cast<size_t>(s.n)), gb(static_cast<size_t>(s.n));
      for (size_t i = 0; i < Bn; ++i) gx0[i] = dx0[i] - dx0_0[i];
      for (int64_t j = 0; j < s.n; ++j) {
        gw[j] = dw[j] - dw0[j];
        gb[j] = db[j] - db0[j];
      }
      // xl is a separate input here: dx0 is the direct path x0 · s alone.
      check_gradient("cross dx0 (direct path)", loss, x0.data(), gx0.data(), s.B * s.n);
      check_gradient("cross dxl", loss, xl.data(), dxl.data(), s.B * s.n);
      check_gradient("cross dw", loss, w.data(), gw.data(), s.n);
      check_gradient("cross db", loss, bias.data(), gb.data(), s.n);
    }
  }
}

TEST_CASE("cross layer on x0 itself: the gradient of x0 is dx0 plus dxl",
          "[kernels][interaction]") {
  Context ctx;
  const int64_t B = 3, n = 6;
  auto x0 = test::random_vector<double>(B * n, 610);
  const auto w = test::random_vector<double>(n, 611);
  const auto bias = test::random_vector<double>(n, 612);
  const auto proj = test::random_vector<double>(B * n, 613);
  std::vector<double> y(B * n), sv(B);
  const auto loss = [&] {  // xl and x0 are the same buffer, so a perturbation moves both
    kernels::cross_forward<double>(ctx, B, n, x0.data(), x0.data(), w.data(), bias.data(), y.data(),
                                   sv.data());
    return project(proj, y);
  };
  loss();
  const auto dx0_0 = test::random_vector<double>(B * n, 614);
  auto dx0 = dx0_0;
  std::vector<double> dxl(B * n, 1e9), dw(n, 0.0), db(n, 0.0);
  kernels::cross_backward<double>(ctx, B, n, x0.data(), x0.data(), w.data(), sv.data(), proj.data(),
                                  dx0.data(), dxl.data(), dw.data(), db.data());
  std::vector<double> total(B * n), direct(B * n);
  for (int64_t i = 0; i < B * n; ++i) {
    direct[i] = dx0[i] - dx0_0[i];
    total[i] = direct[i] + dxl[i];
  }
  check_gradient("cross d(x0) through x0 and xl", loss, x0.data(), total.data(), B * n);
  // Either path alone is not the gradient: the check above can tell them apart.
  const auto fd = test::central_difference(x0, loss);
  double worst = 0;
  for (int64_t i = 0; i < B * n; ++i) worst = std::max(worst, std::abs(direct[i] - fd[i]));
  CHECK(worst > 1e-3);
}

TEST_CASE("three chained cross layers (dxl in place over dy) match central differences",
          "[kernels][interaction]") {
  Context ctx;
  const int64_t B = 3, n = 5, L = 3;
  auto x0 = test::random_vector<double>(B * n, 620);
  std::vector<std::vector<double>> w(L), bias(L);
  for (int64_t l = 0; l < L; ++l) {
    w[l] = test::random_vector<double>(n, 621 + l, -0.7, 0.7);
    bias[l] = test::random_vector<double>(n, 631 + l);
  }
  const auto proj = test::random_vector<double>(B * n, 640);
  // x[0] = x0, x[l + 1] = cross(x0, x[l]); s[l] saved per layer.
  std::vector<std::vector<double>> x(L + 1, std::vector<double>(B * n)),
      s(L, std::vector<double>(B));
  const auto loss = [&] {
    x[0] = x0;
    for (int64_t l = 0; l < L; ++l)
      kernels::cross_forward<double>(ctx, B, n, x0.data(), x[l].data(), w[l].data(), bias[l].data(),
                                     x[l + 1].data(), s[l].data());
    return project(proj, x[L]);
  };
  loss();

  // Backward: one gradient buffer g carried down the chain (dxl overwrites dy in place); dx0
  // accumulates every layer's direct term; after layer 0, g is the xl = x0 path.
  std::vector<double> g = proj;
  const auto dx0_0 = test::random_vector<double>(B * n, 641);
  auto dx0 = dx0_0;
  std::vector<std::vector<double>> dw(L), db(L), dw0(L), db0(L);
  for (int64_t l = 0; l < L; ++l) {
    dw0[l] = dw[l] = test::random_vector<double>(n, 650 + l);
    db0[l] = db[l] = test::random_vector<double>(n, 660 + l);
  }
  for (int64_t l = L - 1; l >= 0; --l)
    kernels::cross_backward<double>(ctx, B, n, x0.data(), x[l].data(), w[l].data(), s[l].data(),
                                    g.data(), dx0.data(), g.data(), dw[l].data(), db[l].data());
  std::vector<double> gx0(B * n);
  for (int64_t i = 0; i < B * n; ++i) gx0[i] = dx0[i] - dx0_0[i] + g[i];
  check_gradient("3-layer cross d(x0)", loss, x0.data(), gx0.data(), B * n);
  for (int64_t l = 0; l < L; ++l) {
    std::vector<double> gw(n), gb(n);
    for (int64_t j = 0; j < n; ++j) {
      gw[j] = dw[l][j] - dw0[l][j];
      gb[j] = db[l][j] - db0[l][j];
    }
    check_gradient("3-layer cross dw of layer " + std::to_string(l), loss, w[l].data(), gw.data(),
                   n);
    check_gradient("3-layer cross db of layer " + std::to_string(l), loss, bias[l].data(),
                   gb.data(), n);
  }
}

// ==== Squared error ==========================================================================

TEMPLATE_TEST_CASE("squared_error gives half the row sum of squares and the scaled difference",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t rows, n, lda, ldt, ldda;
  };
  for (const auto& s : std::vector<Shape>{{1, 1, 1, 1, 1},
                                          {7, 1, 1, 3, 2},
                                          {5, 13, 15, 13, 14},
                                          {33, 152, 152, 160, 152},
                                          {1, 37, 40, 37, 41}}) {
    DYNAMIC_SECTION("rows " << s.rows << " n " << s.n) {
      const T grad_scale = T(0.37);
      const auto a = strided_random<T>(s.rows, s.n, s.lda, 700 + s.n, kNaN);
      const auto t = strided_random<T>(s.rows, s.n, s.ldt, 701 + s.rows, kNaN);
      std::vector<T> loss(static_cast<size_t>(s.rows), T(kSentinel)),
          da(static_cast<size_t>(s.rows * s.ldda), T(kSentinel));
      kernels::squared_error<T>(ctx, s.rows, s.n, a.data(), s.lda, t.data(), s.ldt, grad_scale,
                                loss.data(), da.data(), s.ldda);
      require_padding_untouched(da, s.rows, s.n, s.ldda, kSentinel, "da stride padding");

      std::vector<long double> loss_ref(static_cast<size_t>(s.rows), 0.0L),
          da_ref(static_cast<size_t>(s.rows * s.n));
      for (int64_t i = 0; i < s.rows; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          const long double e = static_cast<long double>(a[i * s.lda + j]) -
                                static_cast<long double>(t[i * s.ldt + j]);
          loss_ref[i] += e * e / 2;
          da_ref[i * s.n + j] = static_cast<long double>(grad_scale) * e;
        }
      test::require_close(loss, loss_ref, fwd_tol<T>(), fwd_tol<T>(), "loss");
      test::require_close(unstride(da, s.rows, s.n, s.ldda), da_ref, fwd_tol<T>(), fwd_tol<T>(),
                          "da");
      REQUIRE(test::any_nonzero(loss));

      // Either output alone: the same bits.
      std::vector<T> loss_only(loss.size(), T(kSentinel)), da_only(da.size(), T(kSentinel));
      kernels::squared_error<T>(ctx, s.rows, s.n, a.data(), s.lda, t.data(), s.ldt, grad_scale,
                                loss_only.data(), nullptr, 0);
      kernels::squared_error<T>(ctx, s.rows, s.n, a.data(), s.lda, t.data(), s.ldt, grad_scale,
                                nullptr, da_only.data(), s.ldda);
      test::require_bitwise_equal(loss_only, loss, "loss without da");
      test::require_bitwise_equal(da_only, da, "da without loss");
    }
  }
}

TEMPLATE_TEST_CASE("squared_error with n == 0 gives loss 0; no rows is a no-op",
                   "[kernels][interaction]", float, double) {
  using T = TestType;
  Context ctx;
  std::vector<T> loss(3, T(kSentinel));
  kernels::squared_error<T>(ctx, 3, 0, nullptr, 0, nullptr, 0, T(1), loss.data(), nullptr, 0);
  CHECK(loss == std::vector<T>(3, T(0)));
  std::vector<T> untouched(2, T(3));
  kernels::squared_error<T>(ctx, 0, 4, nullptr, 4, nullptr, 4, T(1), untouched.data(),
                            untouched.data(), 4);
  CHECK(untouched == std::vector<T>(2, T(3)));
}

TEST_CASE("squared_error's da matches central differences of grad_scale times the loss",
          "[kernels][interaction]") {
  Context ctx;
  const int64_t rows = 4, n = 5, lda = 7, ldt = 6, ldda = 8;
  const double grad_scale = 0.25;  // e.g. 1 / batch size
  auto a = strided_random<double>(rows, n, lda, 710, kNaN);
  const auto t = strided_random<double>(rows, n, ldt, 711, kNaN);
  std::vector<double> loss(rows);
  const auto total = [&] {
    kernels::squared_error<double>(ctx, rows, n, a.data(), lda, t.data(), ldt, grad_scale,
                                   loss.data(), nullptr, 0);
    double sum = 0;
    for (const double l : loss) sum += l;
    return grad_scale * sum;
  };
  std::vector<double> da(rows * ldda, kSentinel);
  kernels::squared_error<double>(ctx, rows, n, a.data(), lda, t.data(), ldt, grad_scale, nullptr,
                                 da.data(), ldda);
  std::vector<double> ga(a.size(), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j) ga[i * lda + j] = da[i * ldda + j];
  check_gradient("squared_error da", total, a.data(), ga.data(), 0, strided_indices(rows, n, lda));
}

// ==== Argument checks ========================================================================

TEST_CASE("interaction kernels reject bad sizes and strides naming the argument",
          "[kernels][interaction]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();

  // FM: ldv must cover F·D, ldo / lddo D, lddv F·D.
  CHECK_THROWS_WITH(kernels::fm_forward<float>(ctx, -1, 2, 3, f, 6, f, 3),
                    Contains("fm_forward") && Contains("B = -1"));
  CHECK_THROWS_WITH(kernels::fm_forward<float>(ctx, 2, -2, 3, f, 6, f, 3), Contains("F = -2"));
  CHECK_THROWS_WITH(kernels::fm_forward<float>(ctx, 2, 2, -3, f, 6, f, 3), Contains("D = -3"));
  CHECK_THROWS_WITH(kernels::fm_forward<float>(ctx, 2, 2, 3, f, 5, f, 3),
                    Contains("ldv = 5") && Contains("F*D = 6"));
  CHECK_THROWS_WITH(kernels::fm_forward<float>(ctx, 2, 2, 3, f, 6, f, 2),
                    Contains("ldo = 2") && Contains("D = 3"));
  CHECK_THROWS_WITH(kernels::fm_backward<float>(ctx, 2, 2, 3, f, 5, f, 3, f, 6),
                    Contains("fm_backward") && Contains("ldv = 5"));
  CHECK_THROWS_WITH(kernels::fm_backward<float>(ctx, 2, 2, 3, f, 6, f, 2, f, 6),
                    Contains("lddo = 2"));
  CHECK_THROWS_WITH(kernels::fm_backward<float>(ctx, 2, 2, 3, f, 6, f, 3, f, 4),
                    Contains("lddv = 4") && Contains("F*D = 6"));
  CHECK_THROWS_WITH(kernels::fm_backward<float>(ctx, 2, 2, -1, f, 6, f, 3, f, 6),
                    Contains("D = -1"));

  // Cross layer.
  CHECK_THROWS_WITH(kernels::cross_forward<float>(ctx, -4, 3, f, f, f, f, f, f),
                    Contains("cross_forward") && Contains("B = -4"));
  CHECK_THROWS_WITH(kernels::cross_forward<float>(ctx, 4, -3, f, f, f, f, f, f),
                    Contains("n = -3"));
  CHECK_THROWS_WITH(kernels::cross_backward<float>(ctx, -4, 3, f, f, f, f, f, f, f, f, f),
                    Contains("cross_backward") && Contains("B = -4"));
  CHECK_THROWS_WITH(kernels::cross_backward<float>(ctx, 4, -3, f, f, f, f, f, f, f, f, f),
                    Contains("n = -3"));

  // Squared error: ldda is checked only when da is written.
  CHECK_THROWS_WITH(kernels::squared_error<float>(ctx, -2, 3, f, 3, f, 3, 1.f, f, f, 3),
                    Contains("squared_error") && Contains("rows = -2"));
  CHECK_THROWS_WITH(kernels::squared_error<float>(ctx, 2, -3, f, 3, f, 3, 1.f, f, f, 3),
                    Contains("n = -3"));
  CHECK_THROWS_WITH(kernels::squared_error<float>(ctx, 2, 3, f, 2, f, 3, 1.f, f, f, 3),
                    Contains("lda = 2") && Contains("n = 3"));
  CHECK_THROWS_WITH(kernels::squared_error<float>(ctx, 2, 3, f, 3, f, 1, 1.f, f, f, 3),
                    Contains("ldt = 1"));
  CHECK_THROWS_WITH(kernels::squared_error<float>(ctx, 2, 3, f, 3, f, 3, 1.f, f, f, 0),
                    Contains("ldda = 0"));
  CHECK_NOTHROW(kernels::squared_error<float>(ctx, 2, 3, f, 3, f, 3, 1.f, f, nullptr, 0));
}

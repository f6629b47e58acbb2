// CPU reference of the DIN local activation unit (kernels/din_unit.h): the forward against the
// explicit [q, k, q − k, q ⊙ k] concatenation (an independent reference written here, in long
// double), the backward against central finite differences in double precision, accumulate
// semantics, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "kernels/activation.h"
#include "kernels/din_unit.h"
#include "lockstep/core/error.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {

/// h[b, t] = [q_b, k_bt, q_b − k_bt, q_b ⊙ k_bt] · W + bias, with the 4D concatenation built
/// explicitly, in long double.
template <class T>
std::vector<long double> din_unit_reference(int64_t B, int64_t Tn, int64_t D, int64_t H,
                                            const std::vector<T>& q, int64_t ldq,
                                            const std::vector<T>& k, int64_t ldk,
                                            const std::vector<T>& W, const std::vector<T>& bias) {
  std::vector<long double> h(static_cast<size_t>(B * Tn * H));
  std::vector<long double> z(static_cast<size_t>(4 * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      for (int64_t d = 0; d < D; ++d) {
        const long double qd = q[b * ldq + d], kd = k[r * ldk + d];
        z[d] = qd;
        z[D + d] = kd;
        z[2 * D + d] = qd - kd;
        z[3 * D + d] = qd * kd;
      }
      for (int64_t j = 0; j < H; ++j) {
        long double acc = bias[j];
        for (int64_t i = 0; i < 4 * D; ++i) acc += z[i] * static_cast<long double>(W[i * H + j]);
        h[r * H + j] = acc;
      }
    }
  return h;
}

}  // namespace

// ==== DIN local activation unit ==============================================================

TEMPLATE_TEST_CASE("din_unit_forward equals the explicit [q, k, q-k, q*k] concatenation times W",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t B, Tn, D, H, ldq, ldk;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, 1, 1, 1},      {3, 7, 5, 9, 5, 5},
                                     {1, 50, 32, 80, 32, 32}, {4, 5, 3, 17, 6, 4},
                                     {2, 3, 4, 2, 9, 11},     {5, 2, 1, 3, 2, 3},
                                     {40, 30, 5, 7, 6, 5}};  // several tiles, the last short
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " D " << s.D << " H " << s.H << " ldq " << s.ldq
                         << " ldk " << s.ldk) {
      // Stride padding of q and k holds NaN: reading it would poison h.
      const auto q = strided_random<T>(s.B, s.D, s.ldq, 1 + s.B, kNaN);
      const auto k = strided_random<T>(s.B * s.Tn, s.D, s.ldk, 2 + s.Tn, kNaN);
      const auto W = test::random_vector<T>(4 * s.D * s.H, 3 + s.H, -0.5, 0.5);
      const auto bias = test::random_vector<T>(s.H, 4 + s.H);
      std::vector<T> h(s.B * s.Tn * s.H, T(1e9));  // overwritten
      kernels::din_unit_forward<T>(ctx, s.B, s.Tn, s.D, s.H, q.data(), s.ldq, k.data(), s.ldk,
                                   W.data(), bias.data(), h.data());
      const auto ref = din_unit_reference(s.B, s.Tn, s.D, s.H, q, s.ldq, k, s.ldk, W, bias);
      // |h| ~ sqrt(4D) / 3: scale the absolute tolerance with the length of the dot product.
      const double tol = fwd_tol<T>() * std::sqrt(4.0 * s.D);
      test::require_close(h, ref, tol, tol, "din_unit h vs concatenation reference");
    }
  }
}

TEMPLATE_TEST_CASE("din_unit_forward with D == 0 gives the bias, and empty batches are no-ops",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t B = 2, Tn = 3, H = 5;
  const auto bias = test::random_vector<T>(H, 7);
  std::vector<T> h(B * Tn * H, T(99));
  kernels::din_unit_forward<T>(ctx, B, Tn, 0, H, nullptr, 0, nullptr, 0, nullptr, bias.data(),
                               h.data());
  for (int64_t r = 0; r < B * Tn; ++r)
    for (int64_t j = 0; j < H; ++j) REQUIRE(h[r * H + j] == bias[j]);

  std::vector<T> untouched(4, T(3));
  kernels::din_unit_forward<T>(ctx, 0, Tn, 4, H, nullptr, 4, nullptr, 4, nullptr, nullptr,
                               untouched.data());
  kernels::din_unit_forward<T>(ctx, B, 0, 4, H, nullptr, 4, nullptr, 4, nullptr, nullptr,
                               untouched.data());
  CHECK(untouched == std::vector<T>(4, T(3)));
}

TEST_CASE("din_unit_backward matches central differences for W, bias, q and k",
          "[kernels][attention]") {
  Context ctx;
  const int64_t B = 3, Tn = 4, D = 3, H = 5;
  const int64_t ldq = D + 2, ldk = D + 1, lddq = D + 3, lddk = D + 2;
  auto q = strided_random<double>(B, D, ldq, 11);
  auto k = strided_random<double>(B * Tn, D, ldk, 12);
  auto W = test::random_vector<double>(4 * D * H, 13);
  auto bias = test::random_vector<double>(H, 14);
  const auto proj = test::random_vector<double>(B * Tn * H, 15);  // loss = proj · h
  std::vector<double> h(B * Tn * H);
  const auto loss = [&] {
    kernels::din_unit_forward<double>(ctx, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                      bias.data(), h.data());
    return project(proj, h);
  };

  // Every gradient accumulates: start from random values (another consumer's contribution).
  const auto dW0 = test::random_vector<double>(W.size(), 16);
  const auto dbias0 = test::random_vector<double>(H, 17);
  const auto dq0 = strided_random<double>(B, D, lddq, 18);
  const auto dk0 = strided_random<double>(B * Tn, D, lddk, 19);
  auto dW = dW0, dbias = dbias0, dq = dq0, dk = dk0;
  kernels::din_unit_backward<double>(ctx, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                     proj.data(), dW.data(), dbias.data(), dq.data(), lddq,
                                     dk.data(), lddk);
  require_padding_untouched(dq, B, D, lddq, kSentinel, "dq stride padding");
  require_padding_untouched(dk, B * Tn, D, lddk, kSentinel, "dk stride padding");

  // The analytic gradients are the increments, laid out like the perturbed parameters.
  std::vector<double> gW(W.size()), gbias(H), gq(q.size()), gk(k.size());
  for (size_t i = 0; i < W.size(); ++i) gW[i] = dW[i] - dW0[i];
  for (int64_t j = 0; j < H; ++j) gbias[j] = dbias[j] - dbias0[j];
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) gq[b * ldq + d] = dq[b * lddq + d] - dq0[b * lddq + d];
  for (int64_t r = 0; r < B * Tn; ++r)
    for (int64_t d = 0; d < D; ++d) gk[r * ldk + d] = dk[r * lddk + d] - dk0[r * lddk + d];

  check_gradient("din_unit dW", loss, W.data(), gW.data(), static_cast<int64_t>(W.size()));
  check_gradient("din_unit dbias", loss, bias.data(), gbias.data(), H);
  check_gradient("din_unit dq", loss, q.data(), gq.data(), 0, strided_indices(B, D, ldq));
  check_gradient("din_unit dk", loss, k.data(), gk.data(), 0, strided_indices(B * Tn, D, ldk));

  // Without dq / dk the parameter gradients are unchanged, bit for bit.
  auto dW_only = dW0, dbias_only = dbias0;
  kernels::din_unit_backward<double>(ctx, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                     proj.data(), dW_only.data(), dbias_only.data(), nullptr, 0,
                                     nullptr, 0);
  test::require_bitwise_equal(dW_only, dW, "dW without input gradients");
  test::require_bitwise_equal(dbias_only, dbias, "dbias without input gradients");
  // Only one of the input gradients.
  auto dq_only = dq0, dk_only = dk0;
  dW_only = dW0;
  dbias_only = dbias0;
  kernels::din_unit_backward<double>(ctx, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                     proj.data(), dW_only.data(), dbias_only.data(), dq_only.data(),
                                     lddq, nullptr, 0);
  test::require_bitwise_equal(dq_only, dq, "dq alone");
  kernels::din_unit_backward<double>(ctx, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                     proj.data(), dW_only.data(), dbias_only.data(), nullptr, 0,
                                     dk_only.data(), lddk);
  test::require_bitwise_equal(dk_only, dk, "dk alone");
}

TEST_CASE("din_unit_backward in float agrees with double precision", "[kernels][attention]") {
  // The second shape cuts the CPU kernel's work into several tiles (the last one short) and
  // several chunks of weight-gradient partial products (kernels/cpu/din_unit.cpp).
  struct Shape {
    int64_t B, Tn, D, H;
  };
  for (const Shape s : {Shape{5, 13, 8, 11}, Shape{290, 30, 5, 7}}) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn) {
      Context ctx;
      const int64_t B = s.B, Tn = s.Tn, D = s.D, H = s.H, ld = D + 1;
      const auto qf = strided_random<float>(B, D, ld, 21);
      const auto kf = strided_random<float>(B * Tn, D, ld, 22);
      const auto Wf = test::random_vector<float>(4 * D * H, 23);
      const auto dhf = test::random_vector<float>(B * Tn * H, 24);
      auto dWf = test::random_vector<float>(4 * D * H, 25);
      auto dbf = test::random_vector<float>(H, 26);
      auto dqf = strided_random<float>(B, D, ld, 27);
      auto dkf = strided_random<float>(B * Tn, D, ld, 28);
      auto dWd = to_double(dWf), dbd = to_double(dbf), dqd = to_double(dqf), dkd = to_double(dkf);
      const auto qd = to_double(qf), kd = to_double(kf), Wd = to_double(Wf), dhd = to_double(dhf);
      kernels::din_unit_backward<float>(ctx, B, Tn, D, H, qf.data(), ld, kf.data(), ld, Wf.data(),
                                        dhf.data(), dWf.data(), dbf.data(), dqf.data(), ld,
                                        dkf.data(), ld);
      kernels::din_unit_backward<double>(ctx, B, Tn, D, H, qd.data(), ld, kd.data(), ld, Wd.data(),
                                         dhd.data(), dWd.data(), dbd.data(), dqd.data(), ld,
                                         dkd.data(), ld);
      // dW and dbias sum B·T products, dq T·H: absolute tolerance ~ sqrt(terms) · 1e-6.
      const double rows = static_cast<double>(B * Tn);
      test::require_close(dWf, dWd, 1.5e-6 * std::sqrt(rows), 1e-5, "dW float vs double");
      test::require_close(dbf, dbd, 1.5e-6 * std::sqrt(rows), 1e-5, "dbias float vs double");
      test::require_close(dqf, dqd, 2e-5, 1e-5, "dq float vs double");
      test::require_close(dkf, dkd, 1e-5, 1e-5, "dk float vs double");
    }
  }
}

TEMPLATE_TEST_CASE("din_unit_backward with only dq or only dk requested", "[kernels][din_unit]",
                   float, double) {
  // The gradient that is not requested (nullptr) is neither computed nor written; the other one
  // and the parameter gradients have the bits of the call that requests both.
  using T = TestType;
  Context ctx;
  const int64_t B = 4, Tn = 6, D = 3, H = 5, ld = 4;
  const auto q = strided_random<T>(B, D, ld, 81, kNaN);
  const auto k = strided_random<T>(B * Tn, D, ld, 82, kNaN);
  const auto W = test::random_vector<T>(4 * D * H, 83);
  const auto dh = test::random_vector<T>(B * Tn * H, 84);
  const auto dW0 = test::random_vector<T>(4 * D * H, 85);
  const auto db0 = test::random_vector<T>(H, 86);
  const auto dq0 = strided_random<T>(B, D, ld, 87);
  const auto dk0 = strided_random<T>(B * Tn, D, ld, 88);
  struct Grads {
    std::vector<T> dW, db, dq, dk;
  };
  const auto run = [&](bool want_dq, bool want_dk) {
    Grads g{dW0, db0, dq0, dk0};
    kernels::din_unit_backward<T>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(), dh.data(),
                                  g.dW.data(), g.db.data(), want_dq ? g.dq.data() : nullptr, ld,
                                  want_dk ? g.dk.data() : nullptr, ld);
    return g;
  };
  const Grads both = run(true, true), dq_only = run(true, false), dk_only = run(false, true);
  for (const Grads* one : {&dq_only, &dk_only}) {
    test::require_bitwise_equal(one->dW, both.dW, "dW");
    test::require_bitwise_equal(one->db, both.db, "dbias");
  }
  test::require_bitwise_equal(dq_only.dq, both.dq, "dq (dq only)");
  test::require_bitwise_equal(dq_only.dk, dk0, "dk untouched (dq only)");
  test::require_bitwise_equal(dk_only.dk, both.dk, "dk (dk only)");
  test::require_bitwise_equal(dk_only.dq, dq0, "dq untouched (dk only)");
  CHECK(both.dq != dq0);
  CHECK(both.dk != dk0);
}

TEMPLATE_TEST_CASE("din_unit_prelu_forward/backward equal the unit and PReLU kernels in turn",
                   "[kernels][din_unit]", float, double) {
  // The fused pair gives the bits of din_unit_forward + prelu_forward and of prelu_backward +
  // din_unit_backward (dalpha up to its double sum's grouping), over shapes of one tile, of many
  // tiles and chunks, strided inputs and D = 0.
  using T = TestType;
  Context ctx;
  struct Shape {
    int64_t B, Tn, D, H, ld;
  };
  for (const Shape s : {Shape{3, 7, 5, 9, 6}, Shape{290, 30, 5, 7, 5}, Shape{4, 3, 0, 6, 1}}) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " D " << s.D) {
      const int64_t B = s.B, Tn = s.Tn, D = s.D, H = s.H, ld = s.ld, rows = B * Tn;
      const auto q = strided_random<T>(B, D, ld, 91, kNaN);
      const auto k = strided_random<T>(rows, D, ld, 92, kNaN);
      const auto W = test::random_vector<T>(4 * D * H, 93, -0.5, 0.5);
      const auto bias = test::random_vector<T>(H, 94);
      auto alpha = test::random_vector<T>(H, 95, 0.05, 0.5);
      const auto da0 = test::random_vector<T>(rows * H, 96);
      const auto dW0 = test::random_vector<T>(4 * D * H, 97);
      const auto db0 = test::random_vector<T>(H, 98);
      const auto dalpha0 = test::random_vector<T>(H, 99);
      const auto dq0 = strided_random<T>(B, D, ld, 100);
      const auto dk0 = strided_random<T>(rows, D, ld, 101);

      std::vector<T> h(rows * H), a(rows * H), h_f(rows * H, T(7)), a_f(rows * H, T(7));
      kernels::din_unit_forward<T>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                   bias.data(), h.data());
      kernels::prelu_forward<T>(ctx, rows, H, h.data(), alpha.data(), a.data());
      kernels::din_unit_prelu_forward<T>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                         bias.data(), alpha.data(), h_f.data(), a_f.data());
      test::require_bitwise_equal(h_f, h, "h");
      test::require_bitwise_equal(a_f, a, "a");
      REQUIRE(std::any_of(h.begin(), h.end(), [](T v) { return v < T(0); }));  // PReLU's slope used

      auto da = da0, dW = dW0, db = db0, dalpha = dalpha0, dq = dq0, dk = dk0;
      kernels::prelu_backward<T>(ctx, rows, H, h.data(), alpha.data(), da.data(), da.data(),
                                 dalpha.data());
      kernels::din_unit_backward<T>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                    da.data(), dW.data(), db.data(), dq.data(), ld, dk.data(), ld);
      auto da_f = da0, dW_f = dW0, db_f = db0, dalpha_f = dalpha0, dq_f = dq0, dk_f = dk0;
      kernels::din_unit_prelu_backward<T>(
          ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(), h.data(), alpha.data(),
          da_f.data(), dW_f.data(), db_f.data(), dalpha_f.data(), dq_f.data(), ld, dk_f.data(), ld);
      test::require_bitwise_equal(dW_f, dW, "dW");
      test::require_bitwise_equal(db_f, db, "dbias");
      test::require_bitwise_equal(dq_f, dq, "dq");
      test::require_bitwise_equal(dk_f, dk, "dk");
      test::require_close(dalpha_f, dalpha, 1e-6, 1e-6, "dalpha");
      REQUIRE(dalpha != dalpha0);
      // Without input gradients, the parameter gradients keep their bits.
      auto dW_p = dW0, db_p = db0, dalpha_p = dalpha0;
      da_f = da0;
      kernels::din_unit_prelu_backward<T>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                          h.data(), alpha.data(), da_f.data(), dW_p.data(),
                                          db_p.data(), dalpha_p.data(), nullptr, 0, nullptr, 0);
      test::require_bitwise_equal(dW_p, dW_f, "dW without input gradients");
      test::require_bitwise_equal(db_p, db_f, "dbias without input gradients");
      test::require_bitwise_equal(dalpha_p, dalpha_f, "dalpha without input gradients");
    }
  }
}

// ==== Argument checks ========================================================================

TEST_CASE("din_unit kernels reject bad sizes, strides and lengths naming the argument",
          "[kernels][din_unit]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();

  // DIN unit.
  CHECK_THROWS_WITH(kernels::din_unit_forward<float>(ctx, -1, 2, 3, 4, f, 3, f, 3, f, f, f),
                    Contains("din_unit_forward") && Contains("B = -1"));
  CHECK_THROWS_WITH(kernels::din_unit_forward<float>(ctx, 2, 2, 3, -4, f, 3, f, 3, f, f, f),
                    Contains("H = -4"));
  CHECK_THROWS_WITH(kernels::din_unit_forward<float>(ctx, 2, 2, 3, 4, f, 2, f, 3, f, f, f),
                    Contains("ldq = 2") && Contains("D = 3"));
  CHECK_THROWS_WITH(kernels::din_unit_forward<float>(ctx, 2, 2, 3, 4, f, 3, f, 1, f, f, f),
                    Contains("ldk = 1"));
  CHECK_THROWS_WITH(
      kernels::din_unit_backward<float>(ctx, 2, 2, 3, 4, f, 3, f, 3, f, f, f, f, f, 2, f, 3),
      Contains("din_unit_backward") && Contains("lddq = 2"));
  CHECK_THROWS_WITH(
      kernels::din_unit_backward<float>(ctx, 2, 2, 3, 4, f, 3, f, 3, f, f, f, f, f, 3, f, 0),
      Contains("lddk = 0"));
}

// CPU reference kernels of kernels/attention.h and gemm_strided_batched (kernels/gemm.h):
// forwards against independent naive references written here (the explicit [q, k, q − k, q ⊙ k]
// concatenation for the DIN unit, direct loops in long double for the rest), backwards against
// central finite differences in double precision, accumulate/overwrite semantics, masking,
// numerical edge cases, dropout statistics and determinism, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "gradcheck.h"
#include "strided.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "lockstep/core/error.h"
#include "lockstep/core/philox.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using test::check_gradient;
using test::project;
using namespace lockstep::test;

namespace {

/// Lengths for B samples of at most Tn positions: 0, 1, Tn, then random in [0, Tn]. A batch of
/// one sample gets the full length (so that its output is not trivially zero).
std::vector<int64_t> test_lengths(int64_t B, int64_t Tn, uint64_t seed) {
  if (B == 1) return {Tn};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, Tn);
  std::vector<int64_t> len(static_cast<size_t>(B));
  const int64_t fixed[3] = {0, std::min<int64_t>(1, Tn), Tn};
  for (int64_t b = 0; b < B; ++b) len[b] = b < 3 ? fixed[b] : dist(rng);
  return len;
}


// ---- Independent references ----------------------------------------------------------------

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

/// The keep decision of the dropout contract, written from the header's formula.
bool dropout_keeps(uint64_t seed, uint64_t counter, float p) {
  return uniform01_from_u32(philox_u32(seed, kernels::kDropoutStream, counter)) >= p;
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
                                     {2, 3, 4, 2, 9, 11},     {5, 2, 1, 3, 2, 3}};
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
  Context ctx;
  const int64_t B = 5, Tn = 13, D = 8, H = 11, ld = 9;
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
                                    dhf.data(), dWf.data(), dbf.data(), dqf.data(), ld, dkf.data(),
                                    ld);
  kernels::din_unit_backward<double>(ctx, B, Tn, D, H, qd.data(), ld, kd.data(), ld, Wd.data(),
                                     dhd.data(), dWd.data(), dbd.data(), dqd.data(), ld, dkd.data(),
                                     ld);
  // dW sums B·T = 65 products, dq sums T·H: absolute tolerance ~ sqrt(terms) · 1e-6.
  test::require_close(dWf, dWd, 1e-5, 1e-5, "dW float vs double");
  test::require_close(dbf, dbd, 1e-5, 1e-5, "dbias float vs double");
  test::require_close(dqf, dqd, 2e-5, 1e-5, "dq float vs double");
  test::require_close(dkf, dkd, 1e-5, 1e-5, "dk float vs double");
}

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
  kernels::dropout_forward<T>(ctx, n, p, seed, offset, x.data(), y.data());

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
  kernels::dropout_forward<T>(ctx, n, p, seed, offset, x.data(), again.data());
  test::require_bitwise_equal(again, y, "same seed and offset");
  // The mask of element i is a function of offset + i only: a shifted window reproduces it.
  const int64_t shift = 1000;
  std::vector<T> window(n - shift);
  kernels::dropout_forward<T>(ctx, n - shift, p, seed, offset + shift, x.data() + shift,
                              window.data());
  test::require_bitwise_equal(window, std::vector<T>(y.begin() + shift, y.end()),
                              "window at offset + shift");
  // Another offset or seed gives another mask: about 2 p (1 - p) = 42% of the entries differ.
  const auto differing = [&](uint64_t s, uint64_t o) {
    std::vector<T> z(n);
    kernels::dropout_forward<T>(ctx, n, p, s, o, x.data(), z.data());
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += (z[i] == T(0)) != (y[i] == T(0));
    return static_cast<double>(count) / n;
  };
  CHECK(differing(seed, offset + n) == Approx(2 * p * (1 - p)).margin(0.02));
  CHECK(differing(seed + 1, offset) == Approx(2 * p * (1 - p)).margin(0.02));

  // In place, and the backward uses the same mask and scale.
  auto inplace = x;
  kernels::dropout_forward<T>(ctx, n, p, seed, offset, inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, y, "dropout in place");
  std::vector<T> dx(n);
  kernels::dropout_backward<T>(ctx, n, p, seed, offset, x.data(), dx.data());
  test::require_bitwise_equal(dx, y, "backward of dy = x equals the forward of x");
}

TEMPLATE_TEST_CASE("dropout with p = 0 copies exactly", "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  auto x = test::random_vector<T>(1001, 121);
  x[3] = T(kNaN);
  x[4] = std::numeric_limits<T>::infinity();
  std::vector<T> y(x.size(), T(5)), dx(x.size(), T(5));
  kernels::dropout_forward<T>(ctx, 1001, 0.0f, 9, 0, x.data(), y.data());
  kernels::dropout_backward<T>(ctx, 1001, 0.0f, 9, 0, x.data(), dx.data());
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
    kernels::dropout_forward<double>(ctx, n, p, 77, 5, x.data(), y.data());
    return project(proj, y);
  };
  std::vector<double> dx(n, 1e9);
  kernels::dropout_backward<double>(ctx, n, p, 77, 5, proj.data(), dx.data());
  check_gradient("dropout dx", loss, x.data(), dx.data(), n);
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) dropped += dx[i] == 0.0;
  CHECK(dropped > 0);  // the mask is not trivial
  CHECK(dropped < n);
  auto inplace = proj;
  kernels::dropout_backward<double>(ctx, n, p, 77, 5, inplace.data(), inplace.data());
  test::require_bitwise_equal(inplace, dx, "dropout backward in place");
}

// ==== Strided batched GEMM ===================================================================

TEMPLATE_TEST_CASE("gemm_strided_batched equals a loop of gemm for every transpose combination",
                   "[kernels][attention][gemm]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t M = 3, N = 5, K = 4, batch = 3;
  const T alpha = T(0.75), beta = T(-0.5);
  for (const auto ta : {kernels::Trans::N, kernels::Trans::T})
    for (const auto tb : {kernels::Trans::N, kernels::Trans::T}) {
      DYNAMIC_SECTION("ta " << (ta == kernels::Trans::N ? "N" : "T") << " tb "
                            << (tb == kernels::Trans::N ? "N" : "T")) {
        // Stored shapes (rows, cols) and leading dimensions larger than the columns.
        const int64_t a_rows = ta == kernels::Trans::N ? M : K,
                      a_cols = ta == kernels::Trans::N ? K : M;
        const int64_t b_rows = tb == kernels::Trans::N ? K : N,
                      b_cols = tb == kernels::Trans::N ? N : K;
        const int64_t lda = a_cols + 2, ldb = b_cols + 1, ldc = N + 3;
        // Strides larger than one matrix: the gaps hold a sentinel that must survive in C.
        const int64_t strideA = a_rows * lda + 5, strideB = b_rows * ldb + 7, strideC = M * ldc + 4;
        const auto A = test::random_vector<T>(batch * strideA, 141);
        const auto Bm = test::random_vector<T>(batch * strideB, 142);
        auto C0 = test::random_vector<T>(batch * strideC, 143);
        for (int64_t i = 0; i < batch; ++i) {
          for (int64_t r = 0; r < M; ++r)
            for (int64_t c = N; c < ldc; ++c) C0[i * strideC + r * ldc + c] = T(kSentinel);
          for (int64_t g = M * ldc; g < strideC; ++g) C0[i * strideC + g] = T(kSentinel);
        }

        auto C = C0;
        kernels::gemm_strided_batched<T>(ctx, ta, tb, M, N, K, alpha, A.data(), lda, strideA,
                                         Bm.data(), ldb, strideB, beta, C.data(), ldc, strideC,
                                         batch);
        auto C_loop = C0;
        for (int64_t i = 0; i < batch; ++i)
          kernels::cpu::gemm<T>(ctx, ta, tb, M, N, K, alpha, A.data() + i * strideA, lda,
                                Bm.data() + i * strideB, ldb, beta, C_loop.data() + i * strideC,
                                ldc);
        test::require_bitwise_equal(C, C_loop, "strided batched vs loop of gemm");

        // And against the definition, element by element.
        std::vector<long double> ref(C0.begin(), C0.end());
        for (int64_t i = 0; i < batch; ++i)
          for (int64_t r = 0; r < M; ++r)
            for (int64_t c = 0; c < N; ++c) {
              long double acc = 0;
              for (int64_t kk = 0; kk < K; ++kk) {
                const T a = ta == kernels::Trans::N ? A[i * strideA + r * lda + kk]
                                                    : A[i * strideA + kk * lda + r];
                const T b = tb == kernels::Trans::N ? Bm[i * strideB + kk * ldb + c]
                                                    : Bm[i * strideB + c * ldb + kk];
                acc += static_cast<long double>(a) * b;
              }
              const int64_t at = i * strideC + r * ldc + c;
              ref[at] = alpha * acc + beta * static_cast<long double>(C0[at]);
            }
        test::require_close(C, ref, fwd_tol<T>(), fwd_tol<T>(), "strided batched vs definition");
      }
    }

  // batch == 0 touches nothing.
  std::vector<T> C(4, T(8));
  kernels::gemm_strided_batched<T>(ctx, kernels::Trans::N, kernels::Trans::N, 2, 2, 2, T(1),
                                   nullptr, 2, 4, nullptr, 2, 4, T(0), C.data(), 2, 4, 0);
  CHECK(C == std::vector<T>(4, T(8)));
}

// ==== Argument checks ========================================================================

TEST_CASE("attention kernels reject bad sizes, strides and lengths naming the argument",
          "[kernels][attention]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();
  const std::vector<int64_t> good = {1, 2, 3}, too_long = {1, 4, 2}, negative = {1, -1, 0};

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

  // Layer norm.
  CHECK_THROWS_WITH(kernels::layer_norm_forward<float>(ctx, 2, -1, 1e-5f, f, f, f, f, f, f),
                    Contains("layer_norm_forward") && Contains("n = -1"));
  CHECK_THROWS_WITH(kernels::layer_norm_forward<float>(ctx, 2, 0, 1e-5f, f, f, f, f, f, f),
                    Contains("n = 0"));
  CHECK_THROWS_WITH(kernels::layer_norm_backward<float>(ctx, -2, 4, f, f, f, f, f, f, f, f),
                    Contains("layer_norm_backward") && Contains("rows = -2"));

  // Dropout.
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, 4, 1.0f, 0, 0, f, f),
                    Contains("dropout_forward") && Contains("p = 1"));
  CHECK_THROWS_WITH(kernels::dropout_backward<float>(ctx, 4, -0.1f, 0, 0, f, f),
                    Contains("dropout_backward") && Contains("p = -0.1"));
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, 4, std::nanf(""), 0, 0, f, f),
                    Contains("p = nan"));
  CHECK_THROWS_WITH(kernels::dropout_forward<float>(ctx, -4, 0.5f, 0, 0, f, f), Contains("n = -4"));

  // Strided batched GEMM.
  CHECK_THROWS_WITH(
      kernels::gemm_strided_batched<float>(ctx, kernels::Trans::N, kernels::Trans::N, 2, 2, 2, 1.f,
                                           f, 2, 4, f, 2, 4, 0.f, f, 2, 4, -1),
      Contains("batch = -1"));
  CHECK_THROWS_WITH(
      kernels::gemm_strided_batched<float>(ctx, kernels::Trans::N, kernels::Trans::N, 2, 2, 2, 1.f,
                                           f, 2, -4, f, 2, 4, 0.f, f, 2, 4, 1),
      Contains("strideA=-4"));
  CHECK_THROWS_WITH(
      kernels::gemm_strided_batched<float>(ctx, kernels::Trans::N, kernels::Trans::N, 2, 2, 3, 1.f,
                                           f, 2, 6, f, 2, 6, 0.f, f, 2, 4, 1),
      Contains("lda=2"));
}

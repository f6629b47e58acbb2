// CUDA vs CPU reference for the kernels of kernels/attention.h and gemm_strided_batched, on
// random inputs with fixed seeds at the benchmark shapes (din-bench: T = 50, D = 32, H = 80;
// bst-bench: L = 21, d = 32, 8 heads) and at edge shapes (batch 1, lengths 0 / 1 / max, odd
// sizes, row strides wider than the rows), plus run-to-run bitwise determinism of every CUDA
// reduction and bitwise CPU/CUDA agreement of dropout.
//
// Tolerances (|got − ref| <= atol + rtol |ref|): elementwise results rtol 1e-5; results that go
// through a GEMM or a reduction of `len` terms of magnitude <= 1 rtol 1e-4 with
// atol = 2e-5 · sqrt(len): such sums are of magnitude ~sqrt(len), and CPU and GPU add them in
// different orders.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"

using namespace lockstep;

namespace {

constexpr double kElemAtol = 1e-6, kElemRtol = 1e-5;
constexpr double kReduceRtol = 1e-4;
constexpr float kSentinel = -12345.0f;
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

/// atol for a sum of `len` terms of magnitude <= 1.
double reduce_atol(int64_t len) {
  return 2e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(len, 1)));
}

/// Lengths 0, 1, Tn, then random in [0, Tn]; a single sample gets Tn.
std::vector<int64_t> test_lengths(int64_t B, int64_t Tn, uint64_t seed) {
  if (B == 1) return {Tn};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, Tn);
  std::vector<int64_t> len(static_cast<size_t>(B));
  const int64_t fixed[3] = {0, std::min<int64_t>(1, Tn), Tn};
  for (int64_t b = 0; b < B; ++b) len[b] = b < 3 ? fixed[b] : dist(rng);
  return len;
}

/// (rows, width) random values with row stride ld; the columns past width hold `pad`.
std::vector<float> strided_random(int64_t rows, int64_t width, int64_t ld, uint64_t seed,
                                  float pad = kSentinel, double lo = -1.0, double hi = 1.0) {
  const auto dense = test::random_vector<float>(static_cast<size_t>(rows * width), seed, lo, hi);
  std::vector<float> v(static_cast<size_t>(rows * ld), pad);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) v[r * ld + c] = dense[r * width + c];
  return v;
}

std::vector<float> host(const Context& gpu, const Tensor<float>& t) { return to_host(gpu, t); }

}  // namespace

// ==== DIN unit ===============================================================================

TEST_CASE("CUDA din_unit matches the CPU reference and its backward is deterministic",
          "[gpu][attention]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, Tn, D, H, ldq, ldk;
  };
  // din-bench (q and k as 32-column slices of wider embedding matrices), batch 1, odd sizes.
  const std::vector<Shape> shapes = {{256, 50, 32, 80, 48, 40}, {1, 50, 32, 80, 32, 32},
                                     {1, 1, 1, 1, 1, 1},        {3, 7, 5, 9, 6, 8},
                                     {17, 3, 33, 65, 33, 35},   {4, 5, 0, 7, 0, 0},
                                     {0, 50, 32, 80, 32, 32}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " D " << s.D << " H " << s.H) {
      const int64_t rows = s.B * s.Tn, D = s.D, H = s.H;
      // Stride padding of the inputs is NaN: a kernel reading it would poison its outputs.
      const auto q = strided_random(s.B, D, s.ldq, 1 + rows, kNaNf);
      const auto k = strided_random(rows, D, s.ldk, 2 + rows, kNaNf);
      const auto W = test::random_vector<float>(4 * D * H, 3 + H, -0.3, 0.3);
      const auto bias = test::random_vector<float>(H, 4 + H);
      const auto q_g = test::to_gpu(ctx.gpu, q), k_g = test::to_gpu(ctx.gpu, k),
                 W_g = test::to_gpu(ctx.gpu, W), bias_g = test::to_gpu(ctx.gpu, bias);

      std::vector<float> h(rows * H, 1e9f);
      kernels::din_unit_forward<float>(ctx.cpu, s.B, s.Tn, D, H, q.data(), s.ldq, k.data(), s.ldk,
                                       W.data(), bias.data(), h.data());
      auto h_g = test::to_gpu(ctx.gpu, std::vector<float>(rows * H, 1e9f));
      kernels::din_unit_forward<float>(ctx.gpu, s.B, s.Tn, D, H, q_g.data(), s.ldq, k_g.data(),
                                       s.ldk, W_g.data(), bias_g.data(), h_g.data());
      const auto h_1 = host(ctx.gpu, h_g);
      test::require_close(h_1, h, reduce_atol(4 * D), kReduceRtol, "din_unit_forward h");
      if (rows > 0) REQUIRE(test::any_nonzero(h));
      kernels::din_unit_forward<float>(ctx.gpu, s.B, s.Tn, D, H, q_g.data(), s.ldq, k_g.data(),
                                       s.ldk, W_g.data(), bias_g.data(), h_g.data());
      test::require_bitwise_equal(host(ctx.gpu, h_g), h_1, "din_unit_forward run to run");

      // Backward: every gradient accumulates into random starting values; dq and dk have their
      // own strides, whose padding must keep its sentinel.
      const int64_t lddq = D + 3, lddk = D + 1;
      const auto dh = test::random_vector<float>(rows * H, 5 + rows);
      const auto dW0 = test::random_vector<float>(4 * D * H, 6);
      const auto dbias0 = test::random_vector<float>(H, 7);
      const auto dq0 = strided_random(s.B, D, lddq, 8);
      const auto dk0 = strided_random(rows, D, lddk, 9);
      auto dW = dW0, dbias = dbias0, dq = dq0, dk = dk0;
      kernels::din_unit_backward<float>(ctx.cpu, s.B, s.Tn, D, H, q.data(), s.ldq, k.data(), s.ldk,
                                        W.data(), dh.data(), dW.data(), dbias.data(), dq.data(),
                                        lddq, dk.data(), lddk);
      const auto dh_g = test::to_gpu(ctx.gpu, dh);
      std::vector<float> dW_1, dbias_1, dq_1, dk_1;
      for (int run = 0; run < 2; ++run) {
        auto dW_g = test::to_gpu(ctx.gpu, dW0), dbias_g = test::to_gpu(ctx.gpu, dbias0),
             dq_g = test::to_gpu(ctx.gpu, dq0), dk_g = test::to_gpu(ctx.gpu, dk0);
        kernels::din_unit_backward<float>(ctx.gpu, s.B, s.Tn, D, H, q_g.data(), s.ldq, k_g.data(),
                                          s.ldk, W_g.data(), dh_g.data(), dW_g.data(),
                                          dbias_g.data(), dq_g.data(), lddq, dk_g.data(), lddk);
        if (run == 0) {
          dW_1 = host(ctx.gpu, dW_g);
          dbias_1 = host(ctx.gpu, dbias_g);
          dq_1 = host(ctx.gpu, dq_g);
          dk_1 = host(ctx.gpu, dk_g);
          continue;
        }
        test::require_bitwise_equal(host(ctx.gpu, dW_g), dW_1, "dW run to run");
        test::require_bitwise_equal(host(ctx.gpu, dbias_g), dbias_1, "dbias run to run");
        test::require_bitwise_equal(host(ctx.gpu, dq_g), dq_1, "dq run to run");
        test::require_bitwise_equal(host(ctx.gpu, dk_g), dk_1, "dk run to run");
      }
      test::require_close(dW_1, dW, reduce_atol(rows), kReduceRtol, "din_unit dW");
      test::require_close(dbias_1, dbias, reduce_atol(rows), kReduceRtol, "din_unit dbias");
      // The padding columns compare equal to their sentinels here, so stray writes fail too.
      test::require_close(dq_1, dq, reduce_atol(s.Tn * H), kReduceRtol, "din_unit dq");
      test::require_close(dk_1, dk, reduce_atol(H), kReduceRtol, "din_unit dk");

      // Without input gradients: the same parameter gradients.
      auto dW_g = test::to_gpu(ctx.gpu, dW0), dbias_g = test::to_gpu(ctx.gpu, dbias0);
      kernels::din_unit_backward<float>(ctx.gpu, s.B, s.Tn, D, H, q_g.data(), s.ldq, k_g.data(),
                                        s.ldk, W_g.data(), dh_g.data(), dW_g.data(), dbias_g.data(),
                                        nullptr, 0, nullptr, 0);
      test::require_bitwise_equal(host(ctx.gpu, dW_g), dW_1, "dW without dq, dk");
      test::require_bitwise_equal(host(ctx.gpu, dbias_g), dbias_1, "dbias without dq, dk");
    }
  }
}

// ==== Weighted sum ===========================================================================

TEST_CASE("CUDA weighted_sum matches the CPU reference with exact padding", "[gpu][attention]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, Tn, D, ldx, ldo;
  };
  for (const auto& s : std::vector<Shape>{{256, 50, 32, 64, 40},
                                          {4096, 21, 32, 32, 32},
                                          {1, 50, 32, 32, 32},
                                          {1, 1, 1, 1, 1},
                                          {9, 7, 45, 47, 50},
                                          {0, 5, 3, 3, 3}}) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " D " << s.D) {
      const int64_t rows = s.B * s.Tn, D = s.D;
      const auto lengths = test_lengths(s.B, s.Tn, 21 + s.B);
      const auto x = strided_random(rows, D, s.ldx, 22 + rows, kNaNf);
      const auto w = test::random_vector<float>(rows, 23 + rows);
      const auto len_g = test::to_gpu(ctx.gpu, lengths);
      const auto x_g = test::to_gpu(ctx.gpu, x), w_g = test::to_gpu(ctx.gpu, w);

      const std::vector<float> out0(s.B * s.ldo, kSentinel);
      auto out = out0;
      kernels::weighted_sum_forward<float>(ctx.cpu, s.B, s.Tn, D, lengths.data(), w.data(),
                                           x.data(), s.ldx, out.data(), s.ldo);
      auto out_g = test::to_gpu(ctx.gpu, out0);
      kernels::weighted_sum_forward<float>(ctx.gpu, s.B, s.Tn, D, len_g.data(), w_g.data(),
                                           x_g.data(), s.ldx, out_g.data(), s.ldo);
      const auto out_1 = host(ctx.gpu, out_g);
      test::require_close(out_1, out, reduce_atol(s.Tn), kReduceRtol, "weighted_sum_forward");
      if (s.B > 1)
        for (int64_t d = 0; d < D; ++d) REQUIRE(out_1[d] == 0.f);  // sample 0: length 0
      kernels::weighted_sum_forward<float>(ctx.gpu, s.B, s.Tn, D, len_g.data(), w_g.data(),
                                           x_g.data(), s.ldx, out_g.data(), s.ldo);
      test::require_bitwise_equal(host(ctx.gpu, out_g), out_1, "weighted_sum_forward run to run");

      const int64_t lddo = D + 2, lddx = s.ldx + 1;
      const auto dout = strided_random(s.B, D, lddo, 24, kNaNf);
      const auto dx0 = strided_random(rows, D, lddx, 25);
      std::vector<float> dw(rows, 777.f), dx = dx0;
      kernels::weighted_sum_backward<float>(ctx.cpu, s.B, s.Tn, D, lengths.data(), w.data(),
                                            x.data(), s.ldx, dout.data(), lddo, dw.data(),
                                            dx.data(), lddx);
      const auto dout_g = test::to_gpu(ctx.gpu, dout);
      std::vector<float> dw_1, dx_1;
      for (int run = 0; run < 2; ++run) {
        auto dw_g = test::to_gpu(ctx.gpu, std::vector<float>(rows, 777.f));
        auto dx_g = test::to_gpu(ctx.gpu, dx0);
        kernels::weighted_sum_backward<float>(ctx.gpu, s.B, s.Tn, D, len_g.data(), w_g.data(),
                                              x_g.data(), s.ldx, dout_g.data(), lddo, dw_g.data(),
                                              dx_g.data(), lddx);
        if (run == 0) {
          dw_1 = host(ctx.gpu, dw_g);
          dx_1 = host(ctx.gpu, dx_g);
        } else {
          test::require_bitwise_equal(host(ctx.gpu, dw_g), dw_1, "dw run to run");
        }
      }
      test::require_close(dw_1, dw, reduce_atol(D), kReduceRtol, "weighted_sum dw");
      test::require_close(dx_1, dx, kElemAtol, kElemRtol, "weighted_sum dx");
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = lengths[b]; t < s.Tn; ++t) {
          const int64_t r = b * s.Tn + t;
          REQUIRE(dw_1[r] == 0.f);
          for (int64_t d = 0; d < lddx; ++d) REQUIRE(dx_1[r * lddx + d] == dx0[r * lddx + d]);
        }
    }
  }
}

TEST_CASE("CUDA weighted_sum and masked_softmax clamp out-of-range lengths to [0, T]",
          "[gpu][attention]") {
  // The CPU reference rejects such lengths; on CUDA they cannot be checked without a sync, so
  // the kernels clamp them and never touch memory outside the sequence.
  test::ParityContexts ctx;
  const int64_t B = 3, Tn = 6, D = 4;
  const std::vector<int64_t> bad = {-3, Tn + 7, 2}, clamped = {0, Tn, 2};
  const auto x = test::random_vector<float>(B * Tn * D, 31);
  const auto w = test::random_vector<float>(B * Tn, 32);
  std::vector<float> out(B * D);
  kernels::weighted_sum_forward<float>(ctx.cpu, B, Tn, D, clamped.data(), w.data(), x.data(), D,
                                       out.data(), D);
  const auto bad_g = test::to_gpu(ctx.gpu, bad);
  const auto x_g = test::to_gpu(ctx.gpu, x), w_g = test::to_gpu(ctx.gpu, w);
  auto out_g = test::to_gpu(ctx.gpu, std::vector<float>(B * D, kSentinel));
  kernels::weighted_sum_forward<float>(ctx.gpu, B, Tn, D, bad_g.data(), w_g.data(), x_g.data(), D,
                                       out_g.data(), D);
  test::require_close(host(ctx.gpu, out_g), out, reduce_atol(Tn), kReduceRtol,
                      "weighted sum with clamped lengths");

  std::vector<float> y(B * Tn * D);
  kernels::masked_softmax_forward<float>(ctx.cpu, B * D, Tn, D, clamped.data(), x.data(), y.data());
  auto y_g = test::to_gpu(ctx.gpu, std::vector<float>(B * Tn * D, kSentinel));
  kernels::masked_softmax_forward<float>(ctx.gpu, B * D, Tn, D, bad_g.data(), x_g.data(),
                                         y_g.data());
  test::require_close(host(ctx.gpu, y_g), y, kElemAtol, kElemRtol, "softmax with clamped lengths");
}

// ==== Masked softmax =========================================================================

TEST_CASE("CUDA masked_softmax matches the CPU reference and is deterministic",
          "[gpu][attention]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t samples, group, n;
    double scale;  // inputs uniform in [-scale, scale]
  };
  // bst-bench (rows = B · heads · L, n = L = 21), one long row per sample up to n = 1024, n = 1,
  // n = 33 (one more than a warp), and inputs of magnitude 1e4.
  for (const auto& s : std::vector<Shape>{{512, 8 * 21, 21, 4.0},
                                          {5, 3, 1024, 4.0},
                                          {1, 8 * 21, 21, 4.0},
                                          {7, 2, 1, 4.0},
                                          {9, 4, 33, 4.0},
                                          {6, 5, 50, 1e4}}) {
    const int64_t rows = s.samples * s.group, n = s.n;
    DYNAMIC_SECTION("rows " << rows << " n " << n << " scale " << s.scale) {
      const auto lengths = test_lengths(s.samples, n, 41 + n);
      auto x = test::random_vector<float>(rows * n, 42 + rows, -s.scale, s.scale);
      for (int64_t r = 0; r < rows; ++r)  // masked entries must not be read
        for (int64_t j = lengths[r / s.group]; j < n; ++j) x[r * n + j] = kNaNf;
      const auto len_g = test::to_gpu(ctx.gpu, lengths);
      const auto x_g = test::to_gpu(ctx.gpu, x);

      std::vector<float> y(rows * n);
      kernels::masked_softmax_forward<float>(ctx.cpu, rows, n, s.group, lengths.data(), x.data(),
                                             y.data());
      auto y_g = test::to_gpu(ctx.gpu, std::vector<float>(rows * n, kSentinel));
      kernels::masked_softmax_forward<float>(ctx.gpu, rows, n, s.group, len_g.data(), x_g.data(),
                                             y_g.data());
      const auto y_1 = host(ctx.gpu, y_g);
      test::require_close(y_1, y, 1e-7, kElemRtol, "masked_softmax_forward");
      REQUIRE(test::any_nonzero(y_1));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = lengths[r / s.group]; j < n; ++j) REQUIRE(y_1[r * n + j] == 0.f);
      kernels::masked_softmax_forward<float>(ctx.gpu, rows, n, s.group, len_g.data(), x_g.data(),
                                             y_g.data());
      test::require_bitwise_equal(host(ctx.gpu, y_g), y_1, "softmax forward run to run");
      auto inplace_g = test::to_gpu(ctx.gpu, x);
      kernels::masked_softmax_forward<float>(ctx.gpu, rows, n, s.group, len_g.data(),
                                             inplace_g.data(), inplace_g.data());
      test::require_bitwise_equal(host(ctx.gpu, inplace_g), y_1, "softmax forward in place");

      // Backward from the CPU forward output on both sides, so only the backward is compared.
      const auto dy = test::random_vector<float>(rows * n, 43 + rows);
      std::vector<float> dx(rows * n, 1e9f);
      kernels::masked_softmax_backward<float>(ctx.cpu, rows, n, y.data(), dy.data(), dx.data());
      const auto yc_g = test::to_gpu(ctx.gpu, y), dy_g = test::to_gpu(ctx.gpu, dy);
      auto dx_g = test::to_gpu(ctx.gpu, std::vector<float>(rows * n, 1e9f));
      kernels::masked_softmax_backward<float>(ctx.gpu, rows, n, yc_g.data(), dy_g.data(),
                                              dx_g.data());
      const auto dx_1 = host(ctx.gpu, dx_g);
      test::require_close(dx_1, dx, kElemAtol, kReduceRtol, "masked_softmax_backward");
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = lengths[r / s.group]; j < n; ++j) REQUIRE(dx_1[r * n + j] == 0.f);
      kernels::masked_softmax_backward<float>(ctx.gpu, rows, n, yc_g.data(), dy_g.data(),
                                              dx_g.data());
      test::require_bitwise_equal(host(ctx.gpu, dx_g), dx_1, "softmax backward run to run");
      inplace_g = test::to_gpu(ctx.gpu, dy);
      kernels::masked_softmax_backward<float>(ctx.gpu, rows, n, yc_g.data(), inplace_g.data(),
                                              inplace_g.data());
      test::require_bitwise_equal(host(ctx.gpu, inplace_g), dx_1, "softmax backward in place");
    }
  }
}

// ==== Padding mask ===========================================================================

TEST_CASE("CUDA mask_positions matches the CPU reference bitwise", "[gpu][attention]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, Tn, W, ld;
  };
  for (const auto& s : std::vector<Shape>{
           {256, 50, 32, 64}, {4096, 21, 32, 32}, {1, 1, 1, 1}, {7, 9, 5, 8}, {0, 3, 3, 3}}) {
    DYNAMIC_SECTION("B " << s.B << " T " << s.Tn << " W " << s.W << " ld " << s.ld) {
      const auto lengths = test_lengths(s.B, s.Tn, 51 + s.B);
      const auto x = strided_random(s.B * s.Tn, s.W, s.ld, 52, kSentinel, 0.5, 1.5);
      auto x_cpu = x;
      kernels::mask_positions<float>(ctx.cpu, s.B, s.Tn, s.W, lengths.data(), x_cpu.data(), s.ld);
      const auto len_g = test::to_gpu(ctx.gpu, lengths);
      auto x_g = test::to_gpu(ctx.gpu, x);
      kernels::mask_positions<float>(ctx.gpu, s.B, s.Tn, s.W, len_g.data(), x_g.data(), s.ld);
      test::require_bitwise_equal(host(ctx.gpu, x_g), x_cpu, "mask_positions");
      if (s.B > 1) REQUIRE(x_cpu != x);  // something was masked
    }
  }
}

// ==== Layer norm =============================================================================

TEST_CASE("CUDA layer_norm matches the CPU reference and its reductions are deterministic",
          "[gpu][attention]") {
  test::ParityContexts ctx;
  const float eps = 1e-5f;
  // bst-bench (rows = B · L with L = 21, n = d = 32), one row, n = 1, n not a multiple of 32,
  // long rows, and an empty batch.
  for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{
           {4096 * 21, 32}, {1, 32}, {37, 1}, {301, 33}, {5, 1000}, {0, 32}}) {
    const int64_t rows = shape.first, n = shape.second;
    DYNAMIC_SECTION("rows " << rows << " n " << n) {
      auto x = test::random_vector<float>(rows * n, 61 + rows, -2.0, 3.0);
      if (rows > 1)
        for (int64_t j = 0; j < n; ++j) x[n + j] = 0.625f;  // a constant row: variance 0
      const auto gamma = test::random_vector<float>(n, 62, 0.5, 1.5);
      const auto beta = test::random_vector<float>(n, 63);
      const auto x_g = test::to_gpu(ctx.gpu, x), gamma_g = test::to_gpu(ctx.gpu, gamma),
                 beta_g = test::to_gpu(ctx.gpu, beta);

      std::vector<float> y(rows * n), mean(rows), rstd(rows);
      kernels::layer_norm_forward<float>(ctx.cpu, rows, n, eps, x.data(), gamma.data(), beta.data(),
                                         y.data(), mean.data(), rstd.data());
      auto y_g = test::to_gpu(ctx.gpu, std::vector<float>(rows * n, kSentinel));
      auto mean_g = test::to_gpu(ctx.gpu, std::vector<float>(rows, kSentinel));
      auto rstd_g = test::to_gpu(ctx.gpu, std::vector<float>(rows, kSentinel));
      kernels::layer_norm_forward<float>(ctx.gpu, rows, n, eps, x_g.data(), gamma_g.data(),
                                         beta_g.data(), y_g.data(), mean_g.data(), rstd_g.data());
      const auto y_1 = host(ctx.gpu, y_g);
      test::require_close(host(ctx.gpu, mean_g), mean, kElemAtol, kElemRtol, "layer norm mean");
      test::require_close(host(ctx.gpu, rstd_g), rstd, kElemAtol, kElemRtol, "layer norm rstd");
      test::require_close(y_1, y, 1e-5, kReduceRtol, "layer norm y");
      if (rows > 0) REQUIRE(test::any_nonzero(y));
      auto inplace_g = test::to_gpu(ctx.gpu, x);
      kernels::layer_norm_forward<float>(ctx.gpu, rows, n, eps, inplace_g.data(), gamma_g.data(),
                                         beta_g.data(), inplace_g.data(), mean_g.data(),
                                         rstd_g.data());
      test::require_bitwise_equal(host(ctx.gpu, inplace_g), y_1, "layer norm forward in place");

      // Backward from the CPU statistics on both sides.
      const auto dy = test::random_vector<float>(rows * n, 64 + rows);
      const auto dgamma0 = test::random_vector<float>(n, 65),
                 dbeta0 = test::random_vector<float>(n, 66);
      std::vector<float> dx(rows * n, 1e9f), dgamma = dgamma0, dbeta = dbeta0;
      kernels::layer_norm_backward<float>(ctx.cpu, rows, n, x.data(), gamma.data(), mean.data(),
                                          rstd.data(), dy.data(), dx.data(), dgamma.data(),
                                          dbeta.data());
      const auto meanc_g = test::to_gpu(ctx.gpu, mean), rstdc_g = test::to_gpu(ctx.gpu, rstd),
                 dy_g = test::to_gpu(ctx.gpu, dy);
      std::vector<float> dx_1, dgamma_1, dbeta_1;
      for (int run = 0; run < 3; ++run) {
        // Runs 0 and 1 out of place, run 2 with dx aliasing dy.
        auto dx_g = test::to_gpu(ctx.gpu, run < 2 ? std::vector<float>(rows * n, 1e9f) : dy);
        auto dgamma_g = test::to_gpu(ctx.gpu, dgamma0), dbeta_g = test::to_gpu(ctx.gpu, dbeta0);
        kernels::layer_norm_backward<float>(
            ctx.gpu, rows, n, x_g.data(), gamma_g.data(), meanc_g.data(), rstdc_g.data(),
            run < 2 ? dy_g.data() : dx_g.data(), dx_g.data(), dgamma_g.data(), dbeta_g.data());
        if (run == 0) {
          dx_1 = host(ctx.gpu, dx_g);
          dgamma_1 = host(ctx.gpu, dgamma_g);
          dbeta_1 = host(ctx.gpu, dbeta_g);
          continue;
        }
        const std::string how = run == 1 ? " run to run" : " with dx aliasing dy";
        test::require_bitwise_equal(host(ctx.gpu, dx_g), dx_1, "layer norm dx" + how);
        test::require_bitwise_equal(host(ctx.gpu, dgamma_g), dgamma_1, "dgamma" + how);
        test::require_bitwise_equal(host(ctx.gpu, dbeta_g), dbeta_1, "dbeta" + how);
      }
      // Row 1 is constant: rstd = 1/sqrt(eps) ~ 316 scales its dx and its rounding errors, so
      // it gets an atol in proportion; every other row the plain one.
      const auto row_range = [n, rows](const std::vector<float>& v, int64_t r0, int64_t r1) {
        r0 = std::min(r0, rows);
        r1 = std::min(r1, rows);
        return std::vector<float>(v.begin() + r0 * n, v.begin() + r1 * n);
      };
      const int64_t constant_rows = rows > 1 ? 1 : 0;
      test::require_close(row_range(dx_1, 0, 1), row_range(dx, 0, 1), 1e-5, kReduceRtol,
                          "layer norm dx, row 0");
      test::require_close(row_range(dx_1, 1, 1 + constant_rows),
                          row_range(dx, 1, 1 + constant_rows), 316 * 1e-6, kReduceRtol,
                          "layer norm dx, constant row");
      test::require_close(row_range(dx_1, 1 + constant_rows, rows),
                          row_range(dx, 1 + constant_rows, rows), 1e-5, kReduceRtol,
                          "layer norm dx, other rows");
      test::require_close(dgamma_1, dgamma, reduce_atol(rows), kReduceRtol, "layer norm dgamma");
      test::require_close(dbeta_1, dbeta, reduce_atol(rows), kReduceRtol, "layer norm dbeta");
    }
  }
}

// ==== Dropout ================================================================================

TEST_CASE("CUDA dropout is bitwise equal to the CPU", "[gpu][attention]") {
  test::ParityContexts ctx;
  const int64_t n = 1000003;
  const auto x = test::random_vector<float>(n, 71, -2.0, 2.0);
  const auto x_g = test::to_gpu(ctx.gpu, x);
  struct Case {
    float p;
    uint64_t seed, offset;
  };
  // Offsets past 2^32 use both words of the Philox counter.
  for (const auto& c : std::vector<Case>{{0.1f, 1, 0},
                                         {0.5f, 0xdeadbeefcafeULL, (1ULL << 32) - 7},
                                         {0.3f, 42, 123456789012ULL},
                                         {0.0f, 5, 9}}) {
    DYNAMIC_SECTION("p " << c.p << " seed " << c.seed << " offset " << c.offset) {
      std::vector<float> y(n), dx(n);
      kernels::dropout_forward<float>(ctx.cpu, n, c.p, c.seed, c.offset, x.data(), y.data());
      kernels::dropout_backward<float>(ctx.cpu, n, c.p, c.seed, c.offset, x.data(), dx.data());
      auto y_g = test::to_gpu(ctx.gpu, std::vector<float>(n, kSentinel));
      kernels::dropout_forward<float>(ctx.gpu, n, c.p, c.seed, c.offset, x_g.data(), y_g.data());
      test::require_bitwise_equal(host(ctx.gpu, y_g), y, "dropout_forward");
      auto dx_g = test::to_gpu(ctx.gpu, x);  // in place
      kernels::dropout_backward<float>(ctx.gpu, n, c.p, c.seed, c.offset, dx_g.data(), dx_g.data());
      test::require_bitwise_equal(host(ctx.gpu, dx_g), dx, "dropout_backward in place");
      REQUIRE(test::any_nonzero(y));
    }
  }
  // n == 0 launches nothing and touches nothing.
  auto untouched = test::to_gpu(ctx.gpu, std::vector<float>(4, 3.f));
  kernels::dropout_forward<float>(ctx.gpu, 0, 0.5f, 1, 0, x_g.data(), untouched.data());
  test::require_bitwise_equal(host(ctx.gpu, untouched), std::vector<float>(4, 3.f), "n = 0");
}

// ==== Strided batched GEMM ===================================================================

TEST_CASE("CUDA gemm_strided_batched matches the CPU reference", "[gpu][attention][gemm]") {
  test::ParityContexts ctx;
  using kernels::Trans;
  struct Shape {
    int64_t M, N, K, batch;
  };
  // bst-bench attention per (sample, head): scores Q·Kᵀ (21 × 21 × 4) and P·V (21 × 4 × 21),
  // 512 samples × 8 heads; odd sizes; one matrix.
  for (const auto& s : std::vector<Shape>{{21, 21, 4, 512 * 8},
                                          {21, 4, 21, 512 * 8},
                                          {3, 5, 7, 3},
                                          {1, 1, 1, 1},
                                          {17, 33, 65, 5}}) {
    for (const auto ta : {Trans::N, Trans::T})
      for (const auto tb : {Trans::N, Trans::T}) {
        DYNAMIC_SECTION("M " << s.M << " N " << s.N << " K " << s.K << " batch " << s.batch
                             << " ta " << (ta == Trans::N ? "N" : "T") << " tb "
                             << (tb == Trans::N ? "N" : "T")) {
          const int64_t a_rows = ta == Trans::N ? s.M : s.K, a_cols = ta == Trans::N ? s.K : s.M;
          const int64_t b_rows = tb == Trans::N ? s.K : s.N, b_cols = tb == Trans::N ? s.N : s.K;
          const int64_t lda = a_cols + 1, ldb = b_cols + 2, ldc = s.N + 3;
          const int64_t strideA = a_rows * lda + 3, strideB = b_rows * ldb + 5,
                        strideC = s.M * ldc + 2;
          const auto A = test::random_vector<float>(s.batch * strideA, 81);
          const auto B = test::random_vector<float>(s.batch * strideB, 82);
          const auto C0 = test::random_vector<float>(s.batch * strideC, 83);
          auto C = C0;
          kernels::gemm_strided_batched<float>(ctx.cpu, ta, tb, s.M, s.N, s.K, 0.5f, A.data(), lda,
                                               strideA, B.data(), ldb, strideB, -1.5f, C.data(),
                                               ldc, strideC, s.batch);
          const auto A_g = test::to_gpu(ctx.gpu, A), B_g = test::to_gpu(ctx.gpu, B);
          std::vector<float> C_1;
          for (int run = 0; run < 2; ++run) {
            auto C_g = test::to_gpu(ctx.gpu, C0);
            kernels::gemm_strided_batched<float>(ctx.gpu, ta, tb, s.M, s.N, s.K, 0.5f, A_g.data(),
                                                 lda, strideA, B_g.data(), ldb, strideB, -1.5f,
                                                 C_g.data(), ldc, strideC, s.batch);
            if (run == 0)
              C_1 = host(ctx.gpu, C_g);
            else
              test::require_bitwise_equal(host(ctx.gpu, C_g), C_1, "run to run");
          }
          // Gaps between and beside the matrices compare equal to C0 (they must be untouched).
          test::require_close(C_1, C, reduce_atol(s.K), kReduceRtol, "gemm_strided_batched");
        }
      }
  }
}

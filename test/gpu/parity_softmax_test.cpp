// CUDA vs CPU reference for the masked softmax and the padding mask (kernels/softmax.h), and
// run-to-run bitwise determinism.

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/softmax.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

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

TEST_CASE("CUDA masked_softmax with a row count that is no multiple of the group or the block",
          "[gpu][softmax]") {
  // One warp per row and 8 warps per block: rows = 8 · k + 5 leaves the last block partly idle,
  // and rows % group != 0 leaves the last sample with fewer than `group` rows.
  test::ParityContexts ctx;
  for (const auto& [rows, group, n] : std::vector<std::array<int64_t, 3>>{
           {8 * 37 + 5, 4, 21}, {13, 5, 33}, {2049, 64, 7}, {3, 2, 64}}) {
    DYNAMIC_SECTION("rows " << rows << " group " << group << " n " << n) {
      const int64_t samples = (rows + group - 1) / group;
      REQUIRE(rows % group != 0);
      auto lengths = test_lengths(samples, n, 300 + rows);
      lengths.back() = n;  // the partial last sample is fully valid: its rows must be computed
      auto x = test::random_vector<float>(rows * n, 301 + rows, -3.0, 3.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = lengths[r / group]; j < n; ++j) x[r * n + j] = kNaNf;
      std::vector<float> y(rows * n);
      kernels::masked_softmax_forward<float>(ctx.cpu, rows, n, group, lengths.data(), x.data(),
                                             y.data());
      const auto len_g = test::to_gpu(ctx.gpu, lengths);
      const auto x_g = test::to_gpu(ctx.gpu, x);
      // One sentinel row past the end must stay untouched.
      std::vector<float> y0((rows + 1) * n, kSentinel);
      auto y_g = test::to_gpu(ctx.gpu, y0);
      kernels::masked_softmax_forward<float>(ctx.gpu, rows, n, group, len_g.data(), x_g.data(),
                                             y_g.data());
      auto got = host(ctx.gpu, y_g);
      for (int64_t j = 0; j < n; ++j) REQUIRE(got[rows * n + j] == kSentinel);
      got.resize(static_cast<size_t>(rows * n));
      test::require_close(got, y, 1e-7, kElemRtol, "masked_softmax_forward");
      REQUIRE(test::any_nonzero(std::vector<float>(got.end() - n, got.end())));  // last row

      const auto dy = test::random_vector<float>(rows * n, 302 + rows);
      std::vector<float> dx(rows * n);
      kernels::masked_softmax_backward<float>(ctx.cpu, rows, n, y.data(), dy.data(), dx.data());
      const auto yc_g = test::to_gpu(ctx.gpu, y), dy_g = test::to_gpu(ctx.gpu, dy);
      auto dx_g = test::to_gpu(ctx.gpu, y0);
      kernels::masked_softmax_backward<float>(ctx.gpu, rows, n, yc_g.data(), dy_g.data(),
                                              dx_g.data());
      auto dx_1 = host(ctx.gpu, dx_g);
      for (int64_t j = 0; j < n; ++j) REQUIRE(dx_1[rows * n + j] == kSentinel);
      dx_1.resize(static_cast<size_t>(rows * n));
      test::require_close(dx_1, dx, kElemAtol, kReduceRtol, "masked_softmax_backward");
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

// CUDA vs CPU reference for layer normalisation (kernels/layer_norm.h), and run-to-run bitwise
// determinism of its reductions.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/layer_norm.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

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

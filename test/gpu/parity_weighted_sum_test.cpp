// CUDA vs CPU reference for the masked weighted sum (kernels/weighted_sum.h), exact padding, and
// the clamping of out-of-range lengths (with the masked softmax of kernels/softmax.h).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/softmax.h"
#include "kernels/weighted_sum.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

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

// CUDA vs CPU reference for the DIN unit (kernels/din_unit.h) at the din-bench shape (T = 50,
// D = 32, H = 80) and edge shapes, and run-to-run bitwise determinism of its backward.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/din_unit.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

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

TEST_CASE("CUDA din_unit_backward with only dq or only dk requested", "[gpu][din_unit]") {
  // The other input gradient is nullptr: nothing is written for it, and what is written has the
  // bits of the call that requests both.
  test::ParityContexts ctx;
  const int64_t B = 9, Tn = 7, D = 5, H = 6, ldq = 7, ldk = 6, lddq = 8, lddk = 5;
  const int64_t rows = B * Tn;
  const auto q = strided_random(B, D, ldq, 201, kNaNf);
  const auto k = strided_random(rows, D, ldk, 202, kNaNf);
  const auto W = test::random_vector<float>(4 * D * H, 203, -0.3, 0.3);
  const auto dh = test::random_vector<float>(rows * H, 204);
  const auto dW0 = test::random_vector<float>(4 * D * H, 205);
  const auto dbias0 = test::random_vector<float>(H, 206);
  const auto dq0 = strided_random(B, D, lddq, 207);
  const auto dk0 = strided_random(rows, D, lddk, 208);
  const auto q_g = test::to_gpu(ctx.gpu, q), k_g = test::to_gpu(ctx.gpu, k),
             W_g = test::to_gpu(ctx.gpu, W), dh_g = test::to_gpu(ctx.gpu, dh);

  // mode 0: both, 1: dq only, 2: dk only. Returns dW, dbias, dq, dk after the call.
  const auto run = [&](const Context& c, int mode) {
    const bool gpu = c.is_cuda();
    std::vector<std::vector<float>> out = {dW0, dbias0, dq0, dk0};
    if (!gpu) {
      kernels::din_unit_backward<float>(c, B, Tn, D, H, q.data(), ldq, k.data(), ldk, W.data(),
                                        dh.data(), out[0].data(), out[1].data(),
                                        mode == 2 ? nullptr : out[2].data(), lddq,
                                        mode == 1 ? nullptr : out[3].data(), lddk);
      return out;
    }
    std::vector<Tensor<float>> d;
    for (const auto& v : out) d.push_back(test::to_gpu(c, v));
    kernels::din_unit_backward<float>(c, B, Tn, D, H, q_g.data(), ldq, k_g.data(), ldk, W_g.data(),
                                      dh_g.data(), d[0].data(), d[1].data(),
                                      mode == 2 ? nullptr : d[2].data(), lddq,
                                      mode == 1 ? nullptr : d[3].data(), lddk);
    for (size_t i = 0; i < d.size(); ++i) out[i] = host(c, d[i]);
    return out;
  };
  const auto both = run(ctx.gpu, 0), dq_only = run(ctx.gpu, 1), dk_only = run(ctx.gpu, 2);
  const auto cpu_dq_only = run(ctx.cpu, 1), cpu_dk_only = run(ctx.cpu, 2);
  for (const auto* one : {&dq_only, &dk_only}) {
    test::require_bitwise_equal((*one)[0], both[0], "dW");
    test::require_bitwise_equal((*one)[1], both[1], "dbias");
  }
  test::require_bitwise_equal(dq_only[2], both[2], "dq (dq only)");
  test::require_bitwise_equal(dq_only[3], dk0, "dk untouched (dq only)");
  test::require_bitwise_equal(dk_only[3], both[3], "dk (dk only)");
  test::require_bitwise_equal(dk_only[2], dq0, "dq untouched (dk only)");
  REQUIRE(dq_only[2] != dq0);
  REQUIRE(dk_only[3] != dk0);
  test::require_close(dq_only[2], cpu_dq_only[2], reduce_atol(Tn * H), kReduceRtol, "dq vs CPU");
  test::require_close(dk_only[3], cpu_dk_only[3], reduce_atol(H), kReduceRtol, "dk vs CPU");
  test::require_bitwise_equal(cpu_dq_only[3], dk0, "CPU dk untouched (dq only)");
  test::require_bitwise_equal(cpu_dk_only[2], dq0, "CPU dq untouched (dk only)");
}

TEST_CASE("CUDA din_unit_prelu_forward/backward match the CPU's fused kernels", "[gpu][din_unit]") {
  // The GPU applies PReLU in its element-wise pass and runs prelu_backward before the unit's
  // backward, the CPU fuses them by tiles: the same values up to the GEMMs' and dalpha's
  // summation order; both run to run bitwise. D = 0: h is the bias.
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, Tn, D, H, ld;
  };
  for (const Shape s : {Shape{64, 50, 32, 80, 40}, Shape{4, 3, 0, 6, 1}}) {
    DYNAMIC_SECTION("B " << s.B << " D " << s.D) {
      const int64_t B = s.B, Tn = s.Tn, D = s.D, H = s.H, ld = s.ld, rows = B * Tn;
      const auto q = strided_random(B, D, ld, 301, kNaNf);
      const auto k = strided_random(rows, D, ld, 302, kNaNf);
      const auto W = test::random_vector<float>(4 * D * H, 303, -0.3, 0.3);
      const auto bias = test::random_vector<float>(H, 304);
      const auto alpha = test::random_vector<float>(H, 305, 0.05, 0.5);
      const auto da0 = test::random_vector<float>(rows * H, 306);
      const auto dW0 = test::random_vector<float>(4 * D * H, 307);
      const auto db0 = test::random_vector<float>(H, 308);
      const auto dalpha0 = test::random_vector<float>(H, 309);
      const auto dq0 = strided_random(B, D, ld, 310);
      const auto dk0 = strided_random(rows, D, ld, 311);
      // Returns h, a, dW, dbias, dalpha, dq, dk.
      const auto run = [&](const Context& c) {
        std::vector<std::vector<float>> v = {std::vector<float>(rows * H, 1e9f),
                                             std::vector<float>(rows * H, 1e9f),
                                             dW0,
                                             db0,
                                             dalpha0,
                                             dq0,
                                             dk0,
                                             q,
                                             k,
                                             W,
                                             bias,
                                             alpha,
                                             da0};
        std::vector<Tensor<float>> d;
        for (const auto& x : v) d.push_back(test::to_gpu(c, x));
        const auto p = [&](size_t i) { return c.is_cuda() ? d[i].data() : v[i].data(); };
        kernels::din_unit_prelu_forward<float>(c, B, Tn, D, H, p(7), ld, p(8), ld, p(9), p(10),
                                               p(11), p(0), p(1));
        kernels::din_unit_prelu_backward<float>(c, B, Tn, D, H, p(7), ld, p(8), ld, p(9), p(0),
                                                p(11), p(12), p(2), p(3), p(4), p(5), ld, p(6), ld);
        if (c.is_cuda())
          for (size_t i = 0; i < 7; ++i) v[i] = host(c, d[i]);
        v.resize(7);
        return v;
      };
      const auto cpu = run(ctx.cpu), gpu = run(ctx.gpu), gpu_again = run(ctx.gpu);
      const char* names[] = {"h", "a", "dW", "dbias", "dalpha", "dq", "dk"};
      for (size_t i = 0; i < cpu.size(); ++i)
        test::require_bitwise_equal(gpu_again[i], gpu[i], names[i]);
      test::require_close(gpu[0], cpu[0], reduce_atol(4 * D), kReduceRtol, "h");
      test::require_close(gpu[1], cpu[1], reduce_atol(4 * D), kReduceRtol, "a");
      test::require_close(gpu[2], cpu[2], reduce_atol(rows), kReduceRtol, "dW");
      test::require_close(gpu[3], cpu[3], reduce_atol(rows), kReduceRtol, "dbias");
      test::require_close(gpu[4], cpu[4], reduce_atol(rows), kReduceRtol, "dalpha");
      test::require_close(gpu[5], cpu[5], reduce_atol(Tn * H), kReduceRtol, "dq");
      test::require_close(gpu[6], cpu[6], reduce_atol(H), kReduceRtol, "dk");
      REQUIRE(cpu[4] != dalpha0);
    }
  }
}

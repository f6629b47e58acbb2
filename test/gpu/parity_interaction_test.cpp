// CUDA vs CPU reference for the kernels of kernels/interaction.h, on random inputs with fixed
// seeds at the dual-bench shapes (B = 4096, F = 7 fields of D = 16, a 3-layer cross network of
// width n = 152, logit and hidden-layer distillation) and at edge shapes (batch 1, one field,
// n = 1, odd sizes that are not multiples of a warp or of the 32-row chunks of the cross
// backward, row strides wider than the rows, empty sizes), plus run-to-run bitwise determinism
// of every CUDA reduction.
//
// Tolerances (|got − ref| <= atol + rtol |ref|): elementwise results rtol 1e-5; results that go
// through a reduction of `len` terms of magnitude <= m: rtol 1e-4 with atol = 2e-5 · sqrt(len) · m
// (CPU and GPU add them in different orders, the CPU in double).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/interaction.h"
#include "sequence_parity_util.h"

using namespace lockstep;

using namespace test::sequence_parity;

namespace {

/// max |v[r·ld + c]| over the (rows, width) block with row stride ld (padding left out); by
/// default the whole vector.
double max_abs(const std::vector<float>& v, int64_t rows = 1, int64_t width = -1, int64_t ld = 0) {
  if (width < 0) width = static_cast<int64_t>(v.size());
  double m = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c)
      m = std::max(m, std::abs(static_cast<double>(v[r * ld + c])));
  return m;
}

}  // namespace

// ==== FM bi-interaction ======================================================================

TEST_CASE("CUDA fm_forward / fm_backward match the CPU reference and are deterministic",
          "[gpu][interaction]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, F, D, ldv, ldo, lddo, lddv;
  };
  // dual-bench contiguous, dual-bench as slices of wider buffers (v inside the concatenated
  // embeddings, out inside the concatenated teacher input), batch 1, one field, odd sizes,
  // empty batch, no fields.
  const std::vector<Shape> shapes = {{4096, 7, 16, 112, 16, 16, 112},
                                     {4096, 7, 16, 125, 152, 152, 125},
                                     {1, 7, 16, 112, 16, 16, 112},
                                     {1, 1, 1, 1, 1, 1, 1},
                                     {17, 1, 5, 5, 5, 6, 7},
                                     {3, 5, 33, 170, 35, 34, 166},
                                     {9, 13, 45, 600, 50, 45, 585},
                                     {0, 7, 16, 112, 16, 16, 112},
                                     {5, 0, 3, 0, 3, 3, 0}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("B " << s.B << " F " << s.F << " D " << s.D << " ldv " << s.ldv << " ldo "
                         << s.ldo) {
      const int64_t W = s.F * s.D;
      // Stride padding of the inputs is NaN: a kernel reading it would poison its outputs.
      const auto v = strided_random(s.B, W, s.ldv, 1 + s.B + W, kNaNf);
      const auto v_g = test::to_gpu(ctx.gpu, v);

      const std::vector<float> out0(static_cast<size_t>(s.B * s.ldo), kSentinel);
      auto out = out0;
      kernels::fm_forward<float>(ctx.cpu, s.B, s.F, s.D, v.data(), s.ldv, out.data(), s.ldo);
      auto out_g = test::to_gpu(ctx.gpu, out0);
      kernels::fm_forward<float>(ctx.gpu, s.B, s.F, s.D, v_g.data(), s.ldv, out_g.data(), s.ldo);
      const auto out_1 = host(ctx.gpu, out_g);
      // out[b, d] is Σ_{f<g} v_f · v_g: F(F − 1)/2 terms of magnitude <= 1. The padding
      // compares to its sentinel, so a stray write fails too.
      test::require_close(out_1, out, reduce_atol(s.F * (s.F - 1) / 2), kReduceRtol,
                          "fm_forward out");
      if (s.B > 0 && s.F > 1) REQUIRE(max_abs(out, s.B, s.D, s.ldo) > 0.1);
      if (s.B > 0 && s.F == 0)
        for (int64_t b = 0; b < s.B; ++b)
          for (int64_t d = 0; d < s.D; ++d) REQUIRE(out_1[b * s.ldo + d] == 0.f);
      kernels::fm_forward<float>(ctx.gpu, s.B, s.F, s.D, v_g.data(), s.ldv, out_g.data(), s.ldo);
      test::require_bitwise_equal(host(ctx.gpu, out_g), out_1, "fm_forward run to run");

      // Backward accumulates into random starting values; dout's padding is NaN.
      const auto dout = strided_random(s.B, s.D, s.lddo, 2 + s.B, kNaNf);
      const auto dv0 = strided_random(s.B, W, s.lddv, 3 + W);
      auto dv = dv0;
      kernels::fm_backward<float>(ctx.cpu, s.B, s.F, s.D, v.data(), s.ldv, dout.data(), s.lddo,
                                  dv.data(), s.lddv);
      const auto dout_g = test::to_gpu(ctx.gpu, dout);
      std::vector<float> dv_1;
      for (int run = 0; run < 2; ++run) {
        auto dv_g = test::to_gpu(ctx.gpu, dv0);
        kernels::fm_backward<float>(ctx.gpu, s.B, s.F, s.D, v_g.data(), s.ldv, dout_g.data(),
                                    s.lddo, dv_g.data(), s.lddv);
        if (run == 0)
          dv_1 = host(ctx.gpu, dv_g);
        else
          test::require_bitwise_equal(host(ctx.gpu, dv_g), dv_1, "fm_backward run to run");
      }
      test::require_close(dv_1, dv, reduce_atol(s.F), kReduceRtol, "fm_backward dv");
      if (s.B > 0 && s.F > 1) {  // the increment is not zero: dv moved away from dv0
        double moved = 0;
        for (size_t i = 0; i < dv.size(); ++i)
          moved = std::max(moved, std::abs(static_cast<double>(dv_1[i]) - dv0[i]));
        REQUIRE(moved > 0.1);
      }
    }
  }
}

// ==== DCN cross layer ========================================================================

TEST_CASE("CUDA cross network (3 chained layers) matches the CPU reference, deterministically",
          "[gpu][interaction]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, n;
  };
  // dual-bench (152 = 7 · 16 FM-field embeddings + dense features), batch 1, n = 1, n one more
  // than a warp, B not a multiple of the 32-row chunks, n wider than 6 warps, empty sizes.
  const std::vector<Shape> shapes = {{4096, 152}, {1, 152},  {1, 1},   {5, 33},
                                     {33, 1},     {67, 200}, {0, 152}, {3, 0}};
  constexpr int L = 3;
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("B " << s.B << " n " << s.n) {
      const int64_t B = s.B, n = s.n, Bn = B * n;
      // w ~ U(±1/sqrt(n)) keeps s = xl · w, and so every layer's output, of size ~1.
      const double w_scale = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(n, 1)));
      const auto x0 = test::random_vector<float>(Bn, 10 + B);
      std::vector<std::vector<float>> w(L), bias(L);
      for (int l = 0; l < L; ++l) {
        w[l] = test::random_vector<float>(n, 11 + l, -w_scale, w_scale);
        bias[l] = test::random_vector<float>(n, 21 + l);
      }
      const auto x0_g = test::to_gpu(ctx.gpu, x0);
      std::vector<Tensor<float>> w_g, bias_g;
      for (int l = 0; l < L; ++l) {
        w_g.push_back(test::to_gpu(ctx.gpu, w[l]));
        bias_g.push_back(test::to_gpu(ctx.gpu, bias[l]));
      }

      // ---- Forward: x[l + 1] = cross(x0, x[l]), x[0] = x0 (the same pointer as x0).
      std::vector<std::vector<float>> x(L + 1), sv(L);
      x[0] = x0;
      for (int l = 0; l < L; ++l) {
        x[l + 1].assign(Bn, kSentinel);
        sv[l].assign(B, kSentinel);
        kernels::cross_forward<float>(ctx.cpu, B, n, x0.data(), l == 0 ? x0.data() : x[l].data(),
                                      w[l].data(), bias[l].data(), x[l + 1].data(), sv[l].data());
      }
      // Runs the GPU chain forward and backward; returns every output, for the run-to-run check.
      const auto dy = test::random_vector<float>(Bn, 30 + B);
      const auto dx0_start = test::random_vector<float>(Bn, 31);
      std::vector<std::vector<float>> dw_start(L), db_start(L);
      for (int l = 0; l < L; ++l) {
        dw_start[l] = test::random_vector<float>(n, 32 + l);
        db_start[l] = test::random_vector<float>(n, 42 + l);
      }
      const auto run_gpu = [&] {
        std::vector<std::vector<float>> outputs;
        std::vector<Tensor<float>> x_g, s_g;
        for (int l = 0; l < L; ++l) {
          x_g.push_back(test::to_gpu(ctx.gpu, std::vector<float>(Bn, kSentinel)));
          s_g.push_back(test::to_gpu(ctx.gpu, std::vector<float>(B, kSentinel)));
          const float* xl = l == 0 ? x0_g.data() : x_g[l - 1].data();
          kernels::cross_forward<float>(ctx.gpu, B, n, x0_g.data(), xl, w_g[l].data(),
                                        bias_g[l].data(), x_g[l].data(), s_g[l].data());
        }
        for (int l = 0; l < L; ++l) {
          outputs.push_back(host(ctx.gpu, x_g[l]));
          outputs.push_back(host(ctx.gpu, s_g[l]));
        }
        // Backward: one gradient buffer updated in place (dxl == dy) down the chain.
        auto g_g = test::to_gpu(ctx.gpu, dy);
        auto dx0_g = test::to_gpu(ctx.gpu, dx0_start);
        std::vector<Tensor<float>> dw_g, db_g;
        for (int l = 0; l < L; ++l) {
          dw_g.push_back(test::to_gpu(ctx.gpu, dw_start[l]));
          db_g.push_back(test::to_gpu(ctx.gpu, db_start[l]));
        }
        for (int l = L - 1; l >= 0; --l) {
          const float* xl = l == 0 ? x0_g.data() : x_g[l - 1].data();
          kernels::cross_backward<float>(ctx.gpu, B, n, x0_g.data(), xl, w_g[l].data(),
                                         s_g[l].data(), g_g.data(), dx0_g.data(), g_g.data(),
                                         dw_g[l].data(), db_g[l].data());
        }
        outputs.push_back(host(ctx.gpu, dx0_g));
        outputs.push_back(host(ctx.gpu, g_g));
        for (int l = 0; l < L; ++l) {
          outputs.push_back(host(ctx.gpu, dw_g[l]));
          outputs.push_back(host(ctx.gpu, db_g[l]));
        }
        return outputs;
      };
      const auto got = run_gpu();
      for (int l = 0; l < L; ++l) {
        // Terms of xl · w are <= |xl| / sqrt(n); errors compound down the chain.
        const double atol = reduce_atol(n) * (l + 1);
        test::require_close(got[2 * l], x[l + 1], atol, kReduceRtol,
                            "cross_forward y of layer " + std::to_string(l));
        test::require_close(got[2 * l + 1], sv[l], atol, kReduceRtol,
                            "cross_forward s of layer " + std::to_string(l));
      }
      if (Bn > 0) REQUIRE(max_abs(x[L]) > 0.1);

      // ---- CPU backward, recording each layer's incoming gradient for the tolerances.
      std::vector<float> g = dy, dx0 = dx0_start;
      std::vector<std::vector<float>> dw = dw_start, db = db_start, dy_in(L);
      for (int l = L - 1; l >= 0; --l) {
        dy_in[l] = g;
        kernels::cross_backward<float>(ctx.cpu, B, n, x0.data(), l == 0 ? x0.data() : x[l].data(),
                                       w[l].data(), sv[l].data(), g.data(), dx0.data(), g.data(),
                                       dw[l].data(), db[l].data());
      }
      const size_t first = 2 * L;
      // dx0 and dxl: elementwise in dy, s and ds = dy · x0 (a sum of n terms <= max|dy|).
      double max_dy = 0;
      for (int l = 0; l < L; ++l) max_dy = std::max(max_dy, max_abs(dy_in[l]));
      test::require_close(got[first], dx0, reduce_atol(n, max_dy) * L, kReduceRtol, "dx0");
      test::require_close(got[first + 1], g, reduce_atol(n, max_dy) * L, kReduceRtol,
                          "dxl of layer 0 (the xl = x0 path)");
      for (int l = 0; l < L; ++l) {
        // dw sums B terms ds[b] · xl[b, j] with ds[b] = dy[b] · x0[b]; db sums B dy's.
        double max_ds = 0;
        for (int64_t b = 0; b < B; ++b) {
          double ds = 0;
          for (int64_t j = 0; j < n; ++j)
            ds += static_cast<double>(dy_in[l][b * n + j]) * x0[b * n + j];
          max_ds = std::max(max_ds, std::abs(ds));
        }
        const double max_xl = max_abs(l == 0 ? x0 : x[l]);
        test::require_close(got[first + 2 + 2 * l], dw[l], reduce_atol(B, max_ds * max_xl),
                            kReduceRtol, "dw of layer " + std::to_string(l));
        test::require_close(got[first + 3 + 2 * l], db[l], reduce_atol(B, max_abs(dy_in[l])),
                            kReduceRtol, "db of layer " + std::to_string(l));
      }

      // Run to run: every output bit for bit.
      const auto again = run_gpu();
      for (size_t i = 0; i < got.size(); ++i)
        test::require_bitwise_equal(again[i], got[i],
                                    "cross output " + std::to_string(i) + " run to run");

      // dxl into a separate buffer gives the same bits as in place over dy (last layer).
      if (Bn > 0) {
        const float* xl = x[L - 1].data();
        const auto xl_g = test::to_gpu(ctx.gpu, std::vector<float>(xl, xl + Bn));
        const auto s_g = test::to_gpu(ctx.gpu, sv[L - 1]);
        const auto dy_g = test::to_gpu(ctx.gpu, dy);
        auto inplace_g = test::to_gpu(ctx.gpu, dy);
        auto dxl_g = test::to_gpu(ctx.gpu, std::vector<float>(Bn, 1e9f));
        auto dx0_a = test::to_gpu(ctx.gpu, dx0_start), dx0_b = test::to_gpu(ctx.gpu, dx0_start);
        auto dw_a = test::to_gpu(ctx.gpu, dw_start[0]), dw_b = test::to_gpu(ctx.gpu, dw_start[0]);
        auto db_a = test::to_gpu(ctx.gpu, db_start[0]), db_b = test::to_gpu(ctx.gpu, db_start[0]);
        kernels::cross_backward<float>(ctx.gpu, B, n, x0_g.data(), xl_g.data(), w_g[L - 1].data(),
                                       s_g.data(), dy_g.data(), dx0_a.data(), dxl_g.data(),
                                       dw_a.data(), db_a.data());
        kernels::cross_backward<float>(ctx.gpu, B, n, x0_g.data(), xl_g.data(), w_g[L - 1].data(),
                                       s_g.data(), inplace_g.data(), dx0_b.data(), inplace_g.data(),
                                       dw_b.data(), db_b.data());
        test::require_bitwise_equal(host(ctx.gpu, inplace_g), host(ctx.gpu, dxl_g),
                                    "dxl in place vs separate");
        test::require_bitwise_equal(host(ctx.gpu, dx0_b), host(ctx.gpu, dx0_a), "dx0, dxl == dy");
        test::require_bitwise_equal(host(ctx.gpu, dw_b), host(ctx.gpu, dw_a), "dw, dxl == dy");
        test::require_bitwise_equal(host(ctx.gpu, db_b), host(ctx.gpu, db_a), "db, dxl == dy");
      }
    }
  }
}

// ==== Squared error ==========================================================================

TEST_CASE("CUDA squared_error matches the CPU reference and is deterministic",
          "[gpu][interaction]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t rows, n, lda, ldt, ldda;
  };
  // Logit distillation (n = 1), hidden-layer distillation (n = 152, and a 64-column slice of a
  // wider activation), batch 1, odd sizes, one row longer than many warps, empty sizes.
  const std::vector<Shape> shapes = {
      {4096, 1, 1, 1, 1},  {4096, 152, 152, 152, 152},  {4096, 64, 200, 64, 70}, {1, 1, 1, 1, 1},
      {7, 33, 40, 35, 33}, {5, 1000, 1000, 1001, 1000}, {0, 5, 5, 5, 5},         {3, 0, 0, 0, 0}};
  for (const auto& s : shapes) {
    DYNAMIC_SECTION("rows " << s.rows << " n " << s.n << " lda " << s.lda) {
      const float grad_scale = 1.0f / 4096;
      const auto a = strided_random(s.rows, s.n, s.lda, 50 + s.rows, kNaNf);
      const auto t = strided_random(s.rows, s.n, s.ldt, 51 + s.n, kNaNf);
      const auto a_g = test::to_gpu(ctx.gpu, a), t_g = test::to_gpu(ctx.gpu, t);

      std::vector<float> loss(s.rows, kSentinel), da(s.rows * s.ldda, kSentinel);
      kernels::squared_error<float>(ctx.cpu, s.rows, s.n, a.data(), s.lda, t.data(), s.ldt,
                                    grad_scale, loss.data(), da.data(), s.ldda);
      std::vector<float> loss_1, da_1;
      for (int run = 0; run < 2; ++run) {
        auto loss_g = test::to_gpu(ctx.gpu, std::vector<float>(s.rows, kSentinel));
        auto da_g = test::to_gpu(ctx.gpu, std::vector<float>(s.rows * s.ldda, kSentinel));
        kernels::squared_error<float>(ctx.gpu, s.rows, s.n, a_g.data(), s.lda, t_g.data(), s.ldt,
                                      grad_scale, loss_g.data(), da_g.data(), s.ldda);
        if (run == 0) {
          loss_1 = host(ctx.gpu, loss_g);
          da_1 = host(ctx.gpu, da_g);
        } else {
          test::require_bitwise_equal(host(ctx.gpu, loss_g), loss_1, "loss run to run");
          test::require_bitwise_equal(host(ctx.gpu, da_g), da_1, "da run to run");
        }
      }
      // Terms (a − t)² / 2 <= 2.
      test::require_close(loss_1, loss, reduce_atol(s.n, 2.0), kReduceRtol, "squared_error loss");
      test::require_close(da_1, da, kElemAtol * grad_scale, kElemRtol, "squared_error da");
      if (s.rows > 0 && s.n > 0) REQUIRE(max_abs(loss) > 0.01);
      if (s.n == 0)
        for (const float l : loss_1) REQUIRE(l == 0.f);

      // Either output alone: the same bits.
      auto loss_only = test::to_gpu(ctx.gpu, std::vector<float>(s.rows, kSentinel));
      auto da_only = test::to_gpu(ctx.gpu, std::vector<float>(s.rows * s.ldda, kSentinel));
      kernels::squared_error<float>(ctx.gpu, s.rows, s.n, a_g.data(), s.lda, t_g.data(), s.ldt,
                                    grad_scale, loss_only.data(), nullptr, 0);
      kernels::squared_error<float>(ctx.gpu, s.rows, s.n, a_g.data(), s.lda, t_g.data(), s.ldt,
                                    grad_scale, nullptr, da_only.data(), s.ldda);
      test::require_bitwise_equal(host(ctx.gpu, loss_only), loss_1, "loss without da");
      test::require_bitwise_equal(host(ctx.gpu, da_only), da_1, "da without loss");
    }
  }
}

// CUDA vs CPU GEMM (kernels/gemm.h).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/gemm.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

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

TEST_CASE("CUDA gemm with beta = 0 overwrites a NaN-filled C without reading it", "[gpu][gemm]") {
  // beta == 0 means "C may be uninitialised": NaN * 0 must never reach the result. The stride
  // padding of C keeps its NaN (it is not part of the output).
  test::ParityContexts ctx;
  using kernels::Trans;
  const int64_t M = 7, N = 5, batch = 3;
  for (const int64_t K : {int64_t{1}, int64_t{6}, int64_t{64}}) {
    for (const auto ta : {Trans::N, Trans::T})
      for (const auto tb : {Trans::N, Trans::T}) {
        DYNAMIC_SECTION("K " << K << " ta " << (ta == Trans::N ? "N" : "T") << " tb "
                             << (tb == Trans::N ? "N" : "T")) {
          const int64_t a_rows = ta == Trans::N ? M : K, a_cols = ta == Trans::N ? K : M;
          const int64_t b_rows = tb == Trans::N ? K : N, b_cols = tb == Trans::N ? N : K;
          const int64_t lda = a_cols + 1, ldb = b_cols + 2, ldc = N + 3;
          const int64_t strideA = a_rows * lda, strideB = b_rows * ldb, strideC = M * ldc;
          const auto A = test::random_vector<float>(batch * strideA, 91);
          const auto B = test::random_vector<float>(batch * strideB, 92);
          const std::vector<float> nan_c(static_cast<size_t>(batch * strideC), kNaNf);
          auto C = nan_c;
          kernels::gemm_strided_batched<float>(ctx.cpu, ta, tb, M, N, K, 1.25f, A.data(), lda,
                                               strideA, B.data(), ldb, strideB, 0.0f, C.data(), ldc,
                                               strideC, batch);
          const auto A_g = test::to_gpu(ctx.gpu, A), B_g = test::to_gpu(ctx.gpu, B);
          auto C_g = test::to_gpu(ctx.gpu, nan_c);
          kernels::gemm_strided_batched<float>(ctx.gpu, ta, tb, M, N, K, 1.25f, A_g.data(), lda,
                                               strideA, B_g.data(), ldb, strideB, 0.0f, C_g.data(),
                                               ldc, strideC, batch);
          auto C1_g = test::to_gpu(ctx.gpu, nan_c);
          kernels::gemm<float>(ctx.gpu, ta, tb, M, N, K, 1.25f, A_g.data(), lda, B_g.data(), ldb,
                               0.0f, C1_g.data(), ldc);
          const auto got = host(ctx.gpu, C_g), got1 = host(ctx.gpu, C1_g);
          for (int64_t i = 0; i < batch; ++i)
            for (int64_t r = 0; r < M; ++r)
              for (int64_t c = 0; c < ldc; ++c) {
                const size_t at = static_cast<size_t>(i * strideC + r * ldc + c);
                INFO("matrix " << i << " row " << r << " col " << c);
                if (c < N) {
                  REQUIRE(std::isfinite(C[at]));
                  REQUIRE(std::isfinite(got[at]));
                  REQUIRE(std::abs(got[at] - C[at]) <=
                          reduce_atol(K) + kReduceRtol * std::abs(C[at]));
                  if (i == 0) {  // gemm: the first product alone
                    REQUIRE(std::isfinite(got1[at]));
                    REQUIRE(std::abs(got1[at] - C[at]) <=
                            reduce_atol(K) + kReduceRtol * std::abs(C[at]));
                  }
                } else {
                  REQUIRE(std::isnan(got[at]));  // stride padding untouched
                  if (i == 0) REQUIRE(std::isnan(got1[at]));
                }
              }
        }
      }
  }
}

// ==== Reduced precision: TF32 and bf16 ========================================================

TEST_CASE("CUDA GEMMs with TF32 or bf16 products stay within their stated bounds", "[gpu][gemm]") {
  // kernels/gemm.h: |C - exact| <= 2^-p · Σ_k |a_ik||b_kj| + fp32 rounding, p = 10 (TF32) or 7
  // (bf16): each input rounded to p mantissa bits (relative error 2^-(p+1)), a product of two
  // rounded inputs within 2^-p, summed in fp32.
  using kernels::Trans;
  struct Shape {
    int64_t M, N, K;
  };
  for (const bool bf16 : {false, true}) {
    ContextOptions options;
    options.allow_tf32 = !bf16;
    options.allow_bf16 = bf16;
    Context gpu(Device::cuda(0), options);
    // kernels/gemm.h: inputs rounded or truncated to 7 (bf16) / 10 (TF32) mantissa bits.
    const double p = bf16 ? std::ldexp(1.0, -6) : std::ldexp(1.0, -9);
    // din-bench MLP forward, dX and dW shapes (batch 4096), and an odd one.
    for (const auto& s :
         std::vector<Shape>{{4096, 200, 152}, {4096, 152, 200}, {200, 80, 4096}, {33, 17, 65}}) {
      for (const auto ta : {Trans::N, Trans::T})
        for (const auto tb : {Trans::N, Trans::T}) {
          INFO((bf16 ? "bf16" : "tf32")
               << " M " << s.M << " N " << s.N << " K " << s.K << " ta "
               << (ta == Trans::N ? "N" : "T") << " tb " << (tb == Trans::N ? "N" : "T"));
          const int64_t lda = ta == Trans::N ? s.K : s.M, ldb = tb == Trans::N ? s.N : s.K;
          const auto A = test::random_vector<float>(s.M * s.K, 301, -2.0, 2.0);
          const auto B = test::random_vector<float>(s.K * s.N, 302, -2.0, 2.0);
          const auto A_g = test::to_gpu(gpu, A), B_g = test::to_gpu(gpu, B);
          auto C_g = test::to_gpu(gpu, std::vector<float>(static_cast<size_t>(s.M * s.N), 0.f));
          kernels::gemm<float>(gpu, ta, tb, s.M, s.N, s.K, 1.0f, A_g.data(), lda, B_g.data(), ldb,
                               0.0f, C_g.data(), s.N);
          const auto C = host(gpu, C_g);
          const auto a = [&](int64_t i, int64_t k) {
            return double(ta == Trans::N ? A[i * lda + k] : A[k * lda + i]);
          };
          const auto b = [&](int64_t k, int64_t j) {
            return double(tb == Trans::N ? B[k * ldb + j] : B[j * ldb + k]);
          };
          int64_t bad = 0;
          double worst = 0;
          // Every 7th row and 5th column keeps the double reference fast.
          for (int64_t i = 0; i < s.M; i += 7)
            for (int64_t j = 0; j < s.N; j += 5) {
              double exact = 0, mag = 0;
              for (int64_t k = 0; k < s.K; ++k) {
                exact += a(i, k) * b(k, j);
                mag += std::abs(a(i, k) * b(k, j));
              }
              const double bound = p * mag + s.K * std::ldexp(1.0, -23) * mag + 1e-30;
              const double err = std::abs(double(C[i * s.N + j]) - exact);
              worst = std::max(worst, err / bound);
              bad += err > bound ? 1 : 0;
            }
          INFO("worst error / bound " << worst);
          CHECK(bad == 0);
        }
    }
    // The batched form takes the same path.
    const int64_t M = 21, N = 21, K = 4, batch = 64;
    const auto A = test::random_vector<float>(batch * M * K, 311, -2.0, 2.0);
    const auto B = test::random_vector<float>(batch * K * N, 312, -2.0, 2.0);
    const auto A_g = test::to_gpu(gpu, A), B_g = test::to_gpu(gpu, B);
    auto C_g = test::to_gpu(gpu, std::vector<float>(static_cast<size_t>(batch * M * N), 0.f));
    kernels::gemm_strided_batched<float>(gpu, Trans::N, Trans::N, M, N, K, 1.0f, A_g.data(), K,
                                         M * K, B_g.data(), N, K * N, 0.0f, C_g.data(), N, M * N,
                                         batch);
    const auto C = host(gpu, C_g);
    int64_t bad = 0;
    for (int64_t x = 0; x < batch; ++x)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double exact = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double v = double(A[x * M * K + i * K + k]) * double(B[x * K * N + k * N + j]);
            exact += v;
            mag += std::abs(v);
          }
          const double bound = p * mag + K * std::ldexp(1.0, -23) * mag + 1e-30;
          bad += std::abs(double(C[x * M * N + i * N + j]) - exact) > bound ? 1 : 0;
        }
    CHECK(bad == 0);
  }
}

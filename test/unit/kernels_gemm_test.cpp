// CPU GEMM (kernels/gemm.h): gemm_strided_batched against a loop of gemm for every transpose
// combination, and the argument checks.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/gemm.h"
#include "lockstep/core/error.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using namespace lockstep::test;

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

TEST_CASE("gemm_strided_batched reject bad sizes, strides and lengths naming the argument",
          "[kernels][gemm]") {
  Context ctx;
  std::vector<float> buf(1024, 0.f);
  float* f = buf.data();

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

TEMPLATE_TEST_CASE("gemm with beta = 0 overwrites a NaN-filled C", "[kernels][gemm]", float,
                   double) {
  // beta == 0 means "C may be uninitialised" (kernels/gemm.h): no NaN of the old C may survive,
  // also when K == 0 (the product is then exactly 0). The stride padding of C is not touched.
  using T = TestType;
  Context ctx;
  using kernels::Trans;
  const int64_t M = 4, N = 3, ldc = N + 2;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (const int64_t K : {int64_t{0}, int64_t{1}, int64_t{5}}) {
    INFO("K " << K);
    const int64_t lda = std::max<int64_t>(K, 1) + 1, ldb = N + 1;
    const auto A = test::random_vector<T>(static_cast<size_t>(M * lda), 301);
    const auto B = test::random_vector<T>(static_cast<size_t>(std::max<int64_t>(K, 1) * ldb), 302);
    std::vector<T> C(static_cast<size_t>(M * ldc), nan);
    kernels::gemm<T>(ctx, Trans::N, Trans::N, M, N, K, T(1.5), A.data(), lda, B.data(), ldb, T(0),
                     C.data(), ldc);
    std::vector<T> Cb(static_cast<size_t>(2 * M * ldc), nan);
    kernels::gemm_strided_batched<T>(ctx, Trans::N, Trans::N, M, N, K, T(1.5), A.data(), lda, 0,
                                     B.data(), ldb, 0, T(0), Cb.data(), ldc, M * ldc, 2);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < ldc; ++c) {
        INFO("row " << r << " col " << c);
        if (c >= N) {
          CHECK(std::isnan(C[r * ldc + c]));
          continue;
        }
        T ref = T(0);
        for (int64_t k = 0; k < K; ++k) ref += A[r * lda + k] * B[k * ldb + c];
        REQUIRE(std::isfinite(C[r * ldc + c]));
        CHECK(C[r * ldc + c] == Approx(T(1.5) * ref).margin(1e-5));
        CHECK(Cb[r * ldc + c] == C[r * ldc + c]);
        CHECK(Cb[M * ldc + r * ldc + c] == C[r * ldc + c]);
      }
  }
}

#include "kernels/gemm.h"

#include <cblas.h>

namespace lockstep::kernels::cpu {

namespace {
CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }

void check_gemm_args(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                     int64_t ldc) {
  LOCKSTEP_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M={} N={} K={}", M, N, K);
  const int64_t a_cols = ta == Trans::N ? K : M, b_cols = tb == Trans::N ? N : K;
  LOCKSTEP_CHECK(lda >= std::max<int64_t>(1, a_cols) && ldb >= std::max<int64_t>(1, b_cols) &&
                     ldc >= std::max<int64_t>(1, N),
                 "gemm: leading dimensions too small (lda={} needs >= {}, ldb={} needs >= {}, "
                 "ldc={} needs >= {})",
                 lda, a_cols, ldb, b_cols, ldc, N);
}
}  // namespace

template <>
void gemm<float>(const Context&, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  check_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <>
void gemm<double>(const Context&, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  check_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC,
                          int64_t batch) {
  LOCKSTEP_CHECK(batch >= 0, "gemm_strided_batched: batch = {} is negative", batch);
  LOCKSTEP_CHECK(strideA >= 0 && strideB >= 0 && strideC >= 0,
                 "gemm_strided_batched: negative stride strideA={} strideB={} strideC={}", strideA,
                 strideB, strideC);
  check_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);  // also when batch == 0: same errors always
  for (int64_t i = 0; i < batch; ++i)
    cpu::gemm<T>(ctx, ta, tb, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
                 C + i * strideC, ldc);
}

template void gemm_strided_batched<float>(const Context&, Trans, Trans, int64_t, int64_t, int64_t,
                                          float, const float*, int64_t, int64_t, const float*,
                                          int64_t, int64_t, float, float*, int64_t, int64_t,
                                          int64_t);
template void gemm_strided_batched<double>(const Context&, Trans, Trans, int64_t, int64_t, int64_t,
                                           double, const double*, int64_t, int64_t, const double*,
                                           int64_t, int64_t, double, double*, int64_t, int64_t,
                                           int64_t);

}  // namespace lockstep::kernels::cpu

#include "kernels/gemm.h"

#include <cblas.h>

// Sizes and leading dimensions are validated by the dispatcher (kernels/gemm.h).

namespace lockstep::kernels::cpu {

namespace {
CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }
}  // namespace

template <>
void gemm<float>(const Context&, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <>
void gemm<double>(const Context&, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC,
                          int64_t batch) {
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

#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"

namespace lockstep::kernels::cuda {

// cuBLAS is column-major. A row-major (M, N) matrix is the column-major (N, M) matrix, so the
// row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: swap the
// operands and the M/N sizes, keep the transpose flags.
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  LOCKSTEP_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M={} N={} K={}", M, N, K);
  if (M == 0 || N == 0) return;
  const auto op = [](Trans t) { return t == Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; };
  LOCKSTEP_CUBLAS_CHECK(cublasSgemm(
      cublas_of(ctx), op(tb), op(ta), static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
      &alpha, B, static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C, static_cast<int>(ldc)));
}

}  // namespace lockstep::kernels::cuda

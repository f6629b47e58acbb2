#include <algorithm>
#include <climits>

#include "kernels/cuda/launch.cuh"
#include "kernels/gemm.h"

namespace lockstep::kernels::cuda {

// cuBLAS is column-major. A row-major (M, N) matrix is the column-major (N, M) matrix, so the
// row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: swap the
// operands and the M/N sizes, keep the transpose flags. With ContextOptions::allow_bf16 the
// GemmEx forms run fp32 matrices with bf16 tensor-core products (TF32 is the handle's math mode).
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  LOCKSTEP_CHECK(std::max({M, N, K, lda, ldb, ldc}) <= INT_MAX,
                 "gemm: a size or leading dimension exceeds cuBLAS's int range");
  if (M == 0 || N == 0) return;
  const auto op = [](Trans t) { return t == Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; };
  if (ctx.options().allow_bf16) {
    LOCKSTEP_CUBLAS_CHECK(
        cublasGemmEx(cublas_of(ctx), op(tb), op(ta), static_cast<int>(N), static_cast<int>(M),
                     static_cast<int>(K), &alpha, B, CUDA_R_32F, static_cast<int>(ldb), A,
                     CUDA_R_32F, static_cast<int>(lda), &beta, C, CUDA_R_32F, static_cast<int>(ldc),
                     CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
    return;
  }
  LOCKSTEP_CUBLAS_CHECK(cublasSgemm(
      cublas_of(ctx), op(tb), op(ta), static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
      &alpha, B, static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C, static_cast<int>(ldc)));
}

// The same operand swap as gemm(), for `batch` independent products at fixed element strides.
// Sizes and strides are validated by the dispatcher; here only that they fit cuBLAS's int.
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          float alpha, const float* A, int64_t lda, int64_t strideA, const float* B,
                          int64_t ldb, int64_t strideB, float beta, float* C, int64_t ldc,
                          int64_t strideC, int64_t batch) {
  constexpr const char* op = "gemm_strided_batched";
  LOCKSTEP_CHECK(std::max({M, N, K, lda, ldb, ldc, batch}) <= INT_MAX,
                 "{}: a size, leading dimension or batch exceeds cuBLAS's int range", op);
  if (M == 0 || N == 0 || batch == 0) return;
  const auto op_of = [](Trans t) { return t == Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; };
  if (ctx.options().allow_bf16) {
    LOCKSTEP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_of(ctx), op_of(tb), op_of(ta), static_cast<int>(N), static_cast<int>(M),
        static_cast<int>(K), &alpha, B, CUDA_R_32F, static_cast<int>(ldb),
        static_cast<long long>(strideB), A, CUDA_R_32F, static_cast<int>(lda),
        static_cast<long long>(strideA), &beta, C, CUDA_R_32F, static_cast<int>(ldc),
        static_cast<long long>(strideC), static_cast<int>(batch), CUBLAS_COMPUTE_32F_FAST_16BF,
        CUBLAS_GEMM_DEFAULT));
    return;
  }
  LOCKSTEP_CUBLAS_CHECK(cublasSgemmStridedBatched(
      cublas_of(ctx), op_of(tb), op_of(ta), static_cast<int>(N), static_cast<int>(M),
      static_cast<int>(K), &alpha, B, static_cast<int>(ldb), static_cast<long long>(strideB), A,
      static_cast<int>(lda), static_cast<long long>(strideA), &beta, C, static_cast<int>(ldc),
      static_cast<long long>(strideC), static_cast<int>(batch)));
}

}  // namespace lockstep::kernels::cuda

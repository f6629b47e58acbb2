#pragma once
// General matrix multiply on row-major matrices: OpenBLAS on the CPU, cuBLAS on CUDA.

#include "kernels/common.h"

namespace lockstep::kernels {

enum class Trans { N, T };

// C (M, N) = alpha * op(A) * op(B) + beta * C, all row-major.
//   op(A): (M, K); A is stored (M, K) with row stride lda if ta == N, else (K, M).
//   op(B): (K, N); B is stored (K, N) with row stride ldb if tb == N, else (N, K).
//   C: row stride ldc. beta == 0 overwrites C (its contents may be uninitialised).
// M, N or K of 0 is allowed (K == 0 scales C by beta). TF32 is used on CUDA only when the
// context allows it (ContextOptions::allow_tf32).
namespace cpu {
template <class T>
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
}
namespace cuda {
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc);
}
template <class T>
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  LOCKSTEP_DISPATCH(T, ctx, gemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Strided batched GEMM: for i < batch, C_i = alpha · op(A_i) · op(B_i) + beta · C_i with
// A_i = A + i·strideA, B_i = B + i·strideB, C_i = C + i·strideC (elements), each as in gemm().
// CPU: a loop of gemm(); CUDA: cublasSgemmStridedBatched.
namespace cpu {
template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc,
                          int64_t strideC, int64_t batch);
}
namespace cuda {
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          float alpha, const float* A, int64_t lda, int64_t strideA,
                          const float* B, int64_t ldb, int64_t strideB, float beta, float* C,
                          int64_t ldc, int64_t strideC, int64_t batch);
}
template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc,
                          int64_t strideC, int64_t batch) {
  LOCKSTEP_DISPATCH(T, ctx, gemm_strided_batched, ta, tb, M, N, K, alpha, A, lda, strideA, B, ldb,
                    strideB, beta, C, ldc, strideC, batch);
}

}  // namespace lockstep::kernels

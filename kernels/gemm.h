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

}  // namespace lockstep::kernels

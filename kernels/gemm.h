#pragma once
// General matrix multiply on row-major matrices: OpenBLAS on the CPU, cuBLAS on CUDA.

#include <algorithm>

#include "kernels/common.h"

namespace lockstep::kernels {

enum class Trans { N, T };

// C (M, N) = alpha * op(A) * op(B) + beta * C, all row-major.
//   op(A): (M, K); A is stored (M, K) with row stride lda if ta == N, else (K, M).
//   op(B): (K, N); B is stored (K, N) with row stride ldb if tb == N, else (N, K).
//   C: row stride ldc. beta == 0 overwrites C (its contents may be uninitialised).
// M, N or K of 0 is allowed (K == 0 scales C by beta). Reduced precision is used on CUDA only
// when the context allows it: TF32 (ContextOptions::allow_tf32, inputs cut to 10 mantissa
// bits, |error| <= 2^-9 · Σ_k |a_ik||b_kj| + fp32 rounding) or bf16 (allow_bf16, 7 mantissa
// bits: |error| <= 2^-6 · Σ_k |a_ik||b_kj| + fp32 rounding), fp32 accumulation either way.
// The bounds hold whether the tensor cores round the inputs to nearest (half these errors) or
// truncate them (cuBLAS does not say which); test/gpu/parity_gemm_test.cpp holds cuBLAS to them.
LOCKSTEP_KERNEL_IMPLS(gemm, const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                      T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C,
                      int64_t ldc)
namespace detail {
/// Sizes and leading dimensions of gemm / gemm_strided_batched (op names the caller).
inline void check_gemm(const char* op, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                       int64_t lda, int64_t ldb, int64_t ldc) {
  LOCKSTEP_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative size M={} N={} K={}", op, M, N, K);
  const int64_t a_cols = ta == Trans::N ? K : M, b_cols = tb == Trans::N ? N : K;
  LOCKSTEP_CHECK(lda >= std::max<int64_t>(1, a_cols) && ldb >= std::max<int64_t>(1, b_cols) &&
                     ldc >= std::max<int64_t>(1, N),
                 "{}: leading dimensions too small (lda={} needs >= {}, ldb={} needs >= {}, "
                 "ldc={} needs >= {})",
                 op, lda, a_cols, ldb, b_cols, ldc, N);
}
inline void check_gemm_strided_batched(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                                       int64_t lda, int64_t strideA, int64_t ldb, int64_t strideB,
                                       int64_t ldc, int64_t strideC, int64_t batch) {
  constexpr const char* op = "gemm_strided_batched";
  LOCKSTEP_CHECK(batch >= 0, "{}: batch = {} is negative", op, batch);
  LOCKSTEP_CHECK(strideA >= 0 && strideB >= 0 && strideC >= 0,
                 "{}: negative stride strideA={} strideB={} strideC={}", op, strideA, strideB,
                 strideC);
  check_gemm(op, ta, tb, M, N, K, lda, ldb, ldc);  // also when batch == 0: same errors always
}
}  // namespace detail
template <class T>
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  detail::check_gemm("gemm", ta, tb, M, N, K, lda, ldb, ldc);
  LOCKSTEP_DISPATCH(T, ctx, gemm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Strided batched GEMM: for i < batch, C_i = alpha · op(A_i) · op(B_i) + beta · C_i with
// A_i = A + i·strideA, B_i = B + i·strideB, C_i = C + i·strideC (elements), each as in gemm().
// CPU: a loop of gemm(); CUDA: cublasSgemmStridedBatched.
LOCKSTEP_KERNEL_IMPLS(gemm_strided_batched, const Context& ctx, Trans ta, Trans tb, int64_t M,
                      int64_t N, int64_t K, T alpha, const T* A, int64_t lda, int64_t strideA,
                      const T* B, int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc,
                      int64_t strideC, int64_t batch)
template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC,
                          int64_t batch) {
  detail::check_gemm_strided_batched(ta, tb, M, N, K, lda, strideA, ldb, strideB, ldc, strideC,
                                     batch);
  LOCKSTEP_DISPATCH(T, ctx, gemm_strided_batched, ta, tb, M, N, K, alpha, A, lda, strideA, B, ldb,
                    strideB, beta, C, ldc, strideC, batch);
}

}  // namespace lockstep::kernels

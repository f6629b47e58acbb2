#pragma once
// One GEMM on the calling thread (row-major, C = alpha·op(A)·op(B) + beta·C), through the BLAS
// library of the build (docs/performance.md, "GEMM library"): for kernels that cut their work
// into fixed chunks themselves (kernels/cpu/parallel.h) and call a GEMM per chunk.
// kernels::cpu::gemm (kernels/gemm.h) is the one that spreads a whole GEMM over the threads.

#include <cstdint>

#include "kernels/gemm.h"

namespace lockstep::kernels::cpu {

void gemm_serial(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_serial(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace lockstep::kernels::cpu

#include "kernels/gemm.h"

#include <cblas.h>
#if LOCKSTEP_GEMM_BLIS
#include <blis.h>
#endif
#if LOCKSTEP_GEMM_ONEDNN
#include <cstdlib>
#include <string_view>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm_serial.h"
#include "kernels/cpu/parallel.h"

// Sizes and leading dimensions are validated by the dispatcher (kernels/gemm.h).

namespace lockstep::kernels::cpu {

namespace {
CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }
}  // namespace

void gemm_serial(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#if LOCKSTEP_GEMM_ONEDNN
  // LOCKSTEP_CPU_GEMM=openblas in the environment: OpenBLAS after all (side-by-side measurement).
  // The library is a function of the shape and the build, never of the thread count.
  static const bool onednn = [] {
    const char* v = std::getenv("LOCKSTEP_CPU_GEMM");
    return v == nullptr || std::string_view(v) != "openblas";
  }();
  // Tiny products (attention's per-head matrices) stay with OpenBLAS: less overhead per call.
  constexpr int64_t kOneDnnMinMacs = int64_t{1} << 16;
  if (!onednn || M * N * K < kOneDnnMinMacs) {
    cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
    return;
  }
  if (K == 0) {  // C = beta · C (dnnl_sgemm leaves a NaN in C when beta = 0)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  // One OpenMP thread per call, on whichever thread calls (the kernel threads split the work).
  thread_local const bool single = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)single;
  const dnnl_status_t status = dnnl_sgemm(ta == Trans::N ? 'N' : 'T', tb == Trans::N ? 'N' : 'T', M,
                                          N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  LOCKSTEP_CHECK(status == dnnl_success, "dnnl_sgemm failed with status {} (M={} N={} K={})",
                 static_cast<int>(status), M, N, K);
#elif LOCKSTEP_GEMM_BLIS
  static const bool single = [] {  // one BLIS thread per call: the kernel threads split the work
    bli_thread_set_num_threads(1);
    return true;
  }();
  (void)single;
  // BLIS takes both strides of the stored matrices: row-major is (ld, 1), with or without trans.
  bli_sgemm(ta == Trans::N ? BLIS_NO_TRANSPOSE : BLIS_TRANSPOSE,
            tb == Trans::N ? BLIS_NO_TRANSPOSE : BLIS_TRANSPOSE, M, N, K, &alpha,
            const_cast<float*>(A), lda, 1, const_cast<float*>(B), ldb, 1, &beta, C, ldc, 1);
#else
  cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
#endif
}
void gemm_serial(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

namespace {
// How a GEMM is cut into fixed blocks for the kernel threads (kernels/cpu/parallel.h): by the
// shape alone, so the result is the same with any number of threads. Each block is one
// single-threaded BLAS call; blocks of rows (or columns) of C are independent; blocks of K
// (tall-skinny weight gradients: a small C summed over many rows) give partial products that are
// added in block order.
constexpr int64_t kMinBlockMacs = int64_t{1} << 20;  // below this a block is not worth a thread
constexpr int64_t kMinRows = 32;                     // rows or columns per block at least
constexpr int64_t kBlockK = 4096;                    // K per block of a K split
}  // namespace

template <class T>
void gemm(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int64_t macs = M * N * std::max<int64_t>(K, 1);
  const int64_t blocks = macs / kMinBlockMacs;
  if (blocks < 2) {  // (whatever the thread count: the blocks depend on the shape alone)
    gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const auto a_rows = [&](int64_t r) { return ta == Trans::N ? A + r * lda : A + r; };
  const auto b_cols = [&](int64_t c) { return tb == Trans::N ? B + c : B + c * ldb; };
  if (M >= 2 * kMinRows) {  // blocks of rows of C
    const int64_t grain = std::max(kMinRows, (M + blocks - 1) / blocks);
    parallel_for(ctx, M, grain, [&](int64_t r0, int64_t r1) {
      gemm_serial(ta, tb, r1 - r0, N, K, alpha, a_rows(r0), lda, B, ldb, beta, C + r0 * ldc, ldc);
    });
  } else if (N >= 2 * kMinRows) {  // blocks of columns of C
    const int64_t grain = std::max(kMinRows, (N + blocks - 1) / blocks);
    parallel_for(ctx, N, grain, [&](int64_t c0, int64_t c1) {
      gemm_serial(ta, tb, M, c1 - c0, K, alpha, A, lda, b_cols(c0), ldb, beta, C + c0, ldc);
    });
  } else if (K >= 2 * kBlockK) {  // blocks of K: partial products, added in order
    const int64_t parts = (K + kBlockK - 1) / kBlockK;
    LOCKSTEP_KEPT_VECTOR(T, partial);
    partial.resize(static_cast<size_t>(parts * M * N));
    parallel_for(ctx, K, kBlockK, [&](int64_t k0, int64_t k1) {
      const T* a = ta == Trans::N ? A + k0 : A + k0 * lda;
      const T* b = tb == Trans::N ? B + k0 * ldb : B + k0;
      gemm_serial(ta, tb, M, N, k1 - k0, T(1), a, lda, b, ldb, T(0),
                  partial.data() + (k0 / kBlockK) * M * N, N);
    });
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        T sum = T(0);
        for (int64_t p = 0; p < parts; ++p) sum += partial[(p * M + i) * N + j];
        T& c = C[i * ldc + j];
        c = beta == T(0) ? alpha * sum : alpha * sum + beta * c;
      }
  } else {
    gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template void gemm<float>(const Context&, Trans, Trans, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm<double>(const Context&, Trans, Trans, int64_t, int64_t, int64_t, double,
                           const double*, int64_t, const double*, int64_t, double, double*,
                           int64_t);

// Matrices are independent: blocks of them run on the kernel threads, each matrix one BLAS call.
template <class T>
void gemm_strided_batched(const Context& ctx, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                          T alpha, const T* A, int64_t lda, int64_t strideA, const T* B,
                          int64_t ldb, int64_t strideB, T beta, T* C, int64_t ldc, int64_t strideC,
                          int64_t batch) {
  if (M == 0 || N == 0) return;
  parallel_for(ctx, batch, grain_for(M * N * std::max<int64_t>(K, 1)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      gemm_serial(ta, tb, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
                  C + i * strideC, ldc);
  });
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

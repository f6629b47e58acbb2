// Single-threaded SGEMM of lockstep's CPU shapes through OpenBLAS, BLIS or oneDNN (issue 14:
// the GEMM library chosen by measurement). lockstep's CPU kernels call the BLAS single-threaded on
// fixed blocks (docs/performance.md), so one thread is what matters. Built and run for each
// library by bench/blas_compare.sh; not part of the CMake build.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#if defined(USE_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
static const char* kLib = "oneDNN";
static void sgemm(bool ta, bool tb, long M, long N, long K, const float* A, long lda,
                  const float* B, long ldb, float* C, long ldc) {
  dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}
#else
#if defined(USE_BLIS)
#include <blis.h>
static const char* kLib = "BLIS";
#else
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
static const char* kLib = "OpenBLAS";
#endif
static void sgemm(bool ta, bool tb, long M, long N, long K, const float* A, long lda,
                  const float* B, long ldb, float* C, long ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}
#endif

struct Shape {
  const char* what;
  long M, N, K;
  bool ta, tb;
  long batch;  // > 1: that many independent products of this shape (strided)
};

int main() {
#if !defined(USE_ONEDNN) && !defined(USE_BLIS)
  openblas_set_num_threads(1);
#endif
  const Shape shapes[] = {
      {"din unit fwd block (k W)", 410, 80, 32, false, false, 1},
      {"din unit dW (k^T dh), K block", 32, 80, 4096, true, false, 1},
      {"din MLP fwd", 1024, 200, 152, false, false, 1},
      {"din MLP dX (dY W^T)", 1024, 152, 200, false, true, 1},
      {"din MLP dW (X^T dY), row block", 32, 200, 1024, true, false, 1},
      {"bst MLP fwd, row block", 32, 1024, 736, false, false, 1},
      {"bst MLP dW, row block", 32, 1024, 1024, true, false, 1},
      {"bst attention Q K^T x1024", 21, 21, 4, false, true, 1024},
      {"bst attention P V x1024", 21, 4, 21, false, false, 1024},
  };
  std::printf("%s, one thread: GFLOP/s (median of 7)\n", kLib);
  for (const Shape& s : shapes) {
    const long a_size = s.M * s.K, b_size = s.K * s.N, c_size = s.M * s.N;
    std::vector<float> A(a_size * s.batch, 0.5f), B(b_size * s.batch, 0.25f), C(c_size * s.batch);
    const long lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    const long reps = std::max(1L, 20000000L / (s.M * s.N * s.K * s.batch));
    std::vector<double> rates;
    for (int r = 0; r < 7; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (long i = 0; i < reps; ++i)
        for (long b = 0; b < s.batch; ++b)
          sgemm(s.ta, s.tb, s.M, s.N, s.K, A.data() + b * a_size, lda, B.data() + b * b_size, ldb,
                C.data() + b * c_size, s.N);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(2.0 * s.M * s.N * s.K * s.batch * reps / sec / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("  %-34s %5ld %5ld %5ld %s%s x%-5ld %8.1f\n", s.what, s.M, s.N, s.K, s.ta ? "T" : "N",
                s.tb ? "T" : "N", s.batch, rates[3]);
  }
  return 0;
}

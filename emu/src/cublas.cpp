// lockstep's CUDA emulator (docs/cuda_emulation.md): cuBLAS's GEMMs as reference loops in stream
// order.
//
// Column-major as cuBLAS. Sums run in float along k with fused multiply-adds (as the GPU's
// kernels do, in some order); TF32 math mode rounds the products' inputs to TF32 (10 mantissa
// bits, nearest, ties away) and the bf16 compute type to bf16 (nearest even), so code that
// enables them sees their error. beta == 0 never reads C, as in cuBLAS.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cublas_v2.h"
#include "lockstep_emu/runtime.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

namespace {

enum class Rounding { None, Tf32, Bf16 };

float round_input(float x, Rounding r) {
  if (r == Rounding::None || !std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (r == Rounding::Tf32) {
    u = (u + 0x1000u) & ~0x1fffu;
  } else {
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  }
  std::memcpy(&x, &u, 4);
  return x;
}

// Elements of a column-major operand of `rows` x `cols` (as stored) with leading dimension ld.
size_t extent(int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return 0;
  return static_cast<size_t>(rows - 1) + static_cast<size_t>(cols - 1) * ld + 1;
}

struct Gemm {
  cublasOperation_t ta, tb;
  int m, n, k, lda, ldb, ldc;
  float alpha, beta;
  Rounding rounding;

  // C (m x n) = alpha op(A) (m x k) op(B) (k x n) + beta C
  void run(const float* A, const float* B, float* C) const {
    std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(n) * k);
    for (int i = 0; i < m; ++i)  // a: row i of op(A), contiguous
      for (int p = 0; p < k; ++p)
        a[size_t(i) * k + p] = round_input(
            ta == CUBLAS_OP_N ? A[i + size_t(p) * lda] : A[p + size_t(i) * lda], rounding);
    for (int j = 0; j < n; ++j)  // b: column j of op(B), contiguous
      for (int p = 0; p < k; ++p)
        b[size_t(j) * k + p] = round_input(
            tb == CUBLAS_OP_N ? B[p + size_t(j) * ldb] : B[j + size_t(p) * ldb], rounding);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const float* ai = a.data() + size_t(i) * k;  // k may be 0: no element to address
        const float* bj = b.data() + size_t(j) * k;
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc = std::fma(ai[p], bj[p], acc);
        float& c = C[i + size_t(j) * ldc];
        c = beta == 0.0f ? alpha * acc : std::fma(beta, c, alpha * acc);
      }
  }
};

Rounding rounding_of(const cublasContext* h, cublasComputeType_t compute) {
  switch (compute) {
    case CUBLAS_COMPUTE_32F_FAST_16BF:
      return Rounding::Bf16;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      return Rounding::Tf32;
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      return Rounding::None;
    default:
      return h->math == CUBLAS_TF32_TENSOR_OP_MATH ? Rounding::Tf32 : Rounding::None;
  }
}

cublasStatus_t enqueue_gemms(cublasHandle_t h, const char* what, cublasOperation_t ta,
                             cublasOperation_t tb, int m, int n, int k, float alpha, const float* A,
                             int lda, long long sa, const float* B, int ldb, long long sb,
                             float beta, float* C, int ldc, long long sc, int batch,
                             Rounding rounding) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta_ok = ta == CUBLAS_OP_N || ta == CUBLAS_OP_T;
  const bool tb_ok = tb == CUBLAS_OP_N || tb == CUBLAS_OP_T;
  const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  if (!ta_ok || !tb_ok || m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) ||
      ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const Gemm g{ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, rounding};
  for (int i = 0; i < batch; ++i) {
    lockstep_emu::require_device(A + i * sa, extent(a_rows, a_cols, lda) * sizeof(float), what);
    lockstep_emu::require_device(B + i * sb, extent(b_rows, b_cols, ldb) * sizeof(float), what);
    lockstep_emu::require_device(C + i * sc, extent(m, n, ldc) * sizeof(float), what);
  }
  const double bytes = (double(a_rows) * a_cols + double(b_rows) * b_cols +
                        (beta != 0.0f ? 2.0 : 1.0) * double(m) * n) *
                       sizeof(float) * batch;
  const double flops = 2.0 * m * n * k * batch;
  const cudaError_t e = lockstep_emu::enqueue(h->stream, what, [=] {
    if (lockstep_emu::g_profiling) lockstep_emu::profile_op(what, bytes, flops, 'd');
    for (int i = 0; i < batch; ++i) g.run(A + i * sa, B + i * sb, C + i * sc);
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

bool all_float(cudaDataType a, cudaDataType b, cudaDataType c) {
  return a == CUDA_R_32F && b == CUDA_R_32F && c == CUDA_R_32F;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  lockstep_emu::require_device(workspace, bytes, "cublasSetWorkspace");
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* B, int ldb, const float* beta, float* C, int ldc) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  return enqueue_gemms(h, "cublasSgemm", ta, tb, m, n, k, *alpha, A, lda, 0, B, ldb, 0, *beta, C,
                       ldc, 0, 1, rounding_of(h, CUBLAS_COMPUTE_32F));
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta,
                                         float* C, int ldc, long long sc, int batch) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  return enqueue_gemms(h, "cublasSgemmStridedBatched", ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb,
                       sb, *beta, C, ldc, sc, batch, rounding_of(h, CUBLAS_COMPUTE_32F));
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType at,
                            int lda, const void* B, cudaDataType bt, int ldb, const void* beta,
                            void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!all_float(at, bt, ct)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return enqueue_gemms(h, "cublasGemmEx", ta, tb, m, n, k, *static_cast<const float*>(alpha),
                       static_cast<const float*>(A), lda, 0, static_cast<const float*>(B), ldb, 0,
                       *static_cast<const float*>(beta), static_cast<float*>(C), ldc, 0, 1,
                       rounding_of(h, compute));
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType at,
                                          int lda, long long sa, const void* B, cudaDataType bt,
                                          int ldb, long long sb, const void* beta, void* C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!all_float(at, bt, ct)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return enqueue_gemms(h, "cublasGemmStridedBatchedEx", ta, tb, m, n, k,
                       *static_cast<const float*>(alpha), static_cast<const float*>(A), lda, sa,
                       static_cast<const float*>(B), ldb, sb, *static_cast<const float*>(beta),
                       static_cast<float*>(C), ldc, sc, batch, rounding_of(h, compute));
}

// CUDA feature-interaction kernels (kernels/interaction.h), float.
//
// Determinism: every reduction has a fixed order that does not depend on scheduling. Sums over
// fields run sequentially in one thread per (b, d); row dot products and row sums of squares
// use one warp per row (each lane sums its entries {lane, lane + 32, ...} in order, then a fixed
// xor butterfly); column sums over the batch are two-stage: one thread per (chunk of
// kCrossChunk rows, column) sums its rows in order, then the fixed tree of column_reduce.cuh
// (via bias_grad) sums the chunks. No atomics. Arithmetic uses the explicit __f*_rn intrinsics
// so that no contraction into FMAs depends on the compiler.
//
// Sizes and strides are validated by the dispatcher (kernels/interaction.h). All offsets are
// 64-bit.

#include <cstddef>

#include "kernels/bias.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/interaction.h"

namespace lockstep::kernels::cuda {

namespace {

/// Rows per first-stage partial of the cross layer's column sums (dw, db).
constexpr int64_t kCrossChunk = 32;

// ---- FM bi-interaction -----------------------------------------------------------------------

// out[b, d] = 0.5 · ((Σ_f v[b, f, d])² − Σ_f v[b, f, d]²), one thread per (b, d), f in
// increasing order. Adjacent threads take adjacent d: coalesced reads of each field.
//   v: (B, F, D) with row stride ldv; out: (B, D) with row stride ldo.
__global__ void fm_forward_kernel(int64_t B, int64_t F, int64_t D, const float* __restrict__ v,
                                  int64_t ldv, float* __restrict__ out, int64_t ldo) {
  const int64_t total = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / D, d = i - b * D;
    const float* col = v + b * ldv + d;
    float sum = 0.f, sum_sq = 0.f;
    for (int64_t f = 0; f < F; ++f) {
      const float x = col[f * D];
      sum = __fadd_rn(sum, x);
      sum_sq = __fadd_rn(sum_sq, __fmul_rn(x, x));
    }
    out[b * ldo + d] = __fmul_rn(0.5f, __fsub_rn(__fmul_rn(sum, sum), sum_sq));
  }
}

// dv[b, f, d] += dout[b, d] · (Σ_f' v[b, f', d] − v[b, f, d]), one thread per (b, d): the field
// sum is computed once and reused for all F fields of that (b, d).
//   v: (B, F, D) stride ldv; dout: (B, D) stride lddo; dv: (B, F, D) stride lddv.
__global__ void fm_backward_kernel(int64_t B, int64_t F, int64_t D, const float* __restrict__ v,
                                   int64_t ldv, const float* __restrict__ dout, int64_t lddo,
                                   float* __restrict__ dv, int64_t lddv) {
  const int64_t total = B * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / D, d = i - b * D;
    const float* col = v + b * ldv + d;
    float sum = 0.f;
    for (int64_t f = 0; f < F; ++f) sum = __fadd_rn(sum, col[f * D]);
    const float g = dout[b * lddo + d];
    float* dcol = dv + b * lddv + d;
    for (int64_t f = 0; f < F; ++f)
      dcol[f * D] = __fadd_rn(dcol[f * D], __fmul_rn(g, __fsub_rn(sum, col[f * D])));
  }
}

// ---- DCN cross layer -------------------------------------------------------------------------

// One warp per row r of (B, n): s[r] = xl[r] · w (warp dot), then y[r] = x0[r] · s[r] + b + xl[r].
// Fuses the dot with the elementwise update so that xl is read from L1/L2 the second time.
//   x0, xl, y: (B, n) contiguous; w, b: (n); s: (B).
__global__ void cross_forward_kernel(int64_t B, int64_t n, const float* x0, const float* xl,
                                     const float* __restrict__ w, const float* __restrict__ b,
                                     float* y, float* __restrict__ s) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = first_warp_row(); r < B; r += warp_row_stride()) {
    const float* xl_row = xl + r * n;
    float dot = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) dot = __fadd_rn(dot, __fmul_rn(xl_row[j], w[j]));
    const float sr = warp_sum(dot);
    if (lane == 0) s[r] = sr;
    const float* x0_row = x0 + r * n;
    float* y_row = y + r * n;
    // Each lane writes only the entries of xl it read itself: y may alias xl.
    for (int64_t j = lane; j < n; j += kWarp)
      y_row[j] = __fadd_rn(__fadd_rn(__fmul_rn(x0_row[j], sr), b[j]), xl_row[j]);
  }
}

// First backward pass, one warp per row r: ds[r] = dy[r] · x0[r] (warp dot) and
// dx0[r] += dy[r] · s[r]. It only reads dy, so dxl (which may alias dy) is written later.
//   x0, dy, dx0: (B, n); s, ds: (B).
__global__ void cross_backward_rows_kernel(int64_t B, int64_t n, const float* __restrict__ x0,
                                           const float* __restrict__ s, const float* dy,
                                           float* __restrict__ dx0, float* __restrict__ ds) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t r = first_warp_row(); r < B; r += warp_row_stride()) {
    const float* x0_row = x0 + r * n;
    const float* dy_row = dy + r * n;
    float* dx0_row = dx0 + r * n;
    const float sr = s[r];
    float dot = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) {
      const float g = dy_row[j];
      dot = __fadd_rn(dot, __fmul_rn(g, x0_row[j]));
      dx0_row[j] = __fadd_rn(dx0_row[j], __fmul_rn(g, sr));
    }
    dot = warp_sum(dot);
    if (lane == 0) ds[r] = dot;
  }
}

// Second backward pass, one thread per (chunk of kCrossChunk rows, column c), rows in order:
//   part_dw[chunk, c] = Σ_r ds[r] · xl[r, c],  part_db[chunk, c] = Σ_r dy[r, c],
// and in the same sweep dxl[r, c] = dy[r, c] + ds[r] · w[c] (overwrite). Each dy element is
// read and then overwritten by one thread, so dxl may alias dy. Adjacent threads take adjacent
// columns: coalesced. Chunking gives B/32 × n threads instead of the n / 8 blocks of a
// single-pass column reduction.
//   xl, dy, dxl: (B, n); ds: (B); w: (n); part_dw, part_db: (ceil(B / kCrossChunk), n).
__global__ void cross_backward_columns_kernel(int64_t B, int64_t n, const float* __restrict__ xl,
                                              const float* __restrict__ w,
                                              const float* __restrict__ ds, const float* dy,
                                              float* dxl, float* __restrict__ part_dw,
                                              float* __restrict__ part_db) {
  const int64_t chunks = (B + kCrossChunk - 1) / kCrossChunk;
  const int64_t total = chunks * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t chunk = i / n, c = i - chunk * n;
    const int64_t begin = chunk * kCrossChunk;
    const int64_t end = begin + kCrossChunk < B ? begin + kCrossChunk : B;
    const float wc = w[c];
    float sum_w = 0.f, sum_b = 0.f;
    for (int64_t r = begin; r < end; ++r) {
      const float g = dy[r * n + c];
      const float dsr = ds[r];
      sum_w = __fadd_rn(sum_w, __fmul_rn(dsr, xl[r * n + c]));
      sum_b = __fadd_rn(sum_b, g);
      dxl[r * n + c] = __fadd_rn(g, __fmul_rn(dsr, wc));
    }
    part_dw[i] = sum_w;
    part_db[i] = sum_b;
  }
}

// ---- Squared error ---------------------------------------------------------------------------

// One warp per row i: loss[i] = 0.5 · Σ_j (a − t)² (warp sum), da[i, j] = grad_scale · (a − t).
// Either output may be null. Each lane writes only the entries of a it read itself.
//   a: (rows, n) stride lda; t: stride ldt; da: stride ldda; loss: (rows).
__global__ void squared_error_kernel(int64_t rows, int64_t n, const float* a, int64_t lda,
                                     const float* __restrict__ t, int64_t ldt, float grad_scale,
                                     float* __restrict__ loss, float* da, int64_t ldda) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t i = first_warp_row(); i < rows; i += warp_row_stride()) {
    const float* a_row = a + i * lda;
    const float* t_row = t + i * ldt;
    float sum = 0.f;
    for (int64_t j = lane; j < n; j += kWarp) {
      const float diff = __fsub_rn(a_row[j], t_row[j]);
      sum = __fadd_rn(sum, __fmul_rn(diff, diff));
      if (da != nullptr) da[i * ldda + j] = __fmul_rn(grad_scale, diff);
    }
    if (loss != nullptr) {
      sum = warp_sum(sum);  // uniform branch: the whole warp takes it
      if (lane == 0) loss[i] = __fmul_rn(0.5f, sum);
    }
  }
}

}  // namespace

// ---- FM bi-interaction -----------------------------------------------------------------------

void fm_forward(const Context& ctx, int64_t B, int64_t F, int64_t D, const float* v, int64_t ldv,
                float* out, int64_t ldo) {
  constexpr const char* op = "fm_forward";
  if (B == 0 || D == 0) return;  // F == 0 still runs: it writes out = 0
  fm_forward_kernel<<<grid_for(B * D), kBlock, 0, stream_of(ctx)>>>(B, F, D, v, ldv, out, ldo);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

void fm_backward(const Context& ctx, int64_t B, int64_t F, int64_t D, const float* v, int64_t ldv,
                 const float* dout, int64_t lddo, float* dv, int64_t lddv) {
  constexpr const char* op = "fm_backward";
  if (B == 0 || F == 0 || D == 0) return;
  fm_backward_kernel<<<grid_for(B * D), kBlock, 0, stream_of(ctx)>>>(B, F, D, v, ldv, dout, lddo,
                                                                     dv, lddv);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

// ---- DCN cross layer -------------------------------------------------------------------------

void cross_forward(const Context& ctx, int64_t B, int64_t n, const float* x0, const float* xl,
                   const float* w, const float* b, float* y, float* s) {
  constexpr const char* op = "cross_forward";
  if (B == 0) return;
  if (n == 0) {  // empty rows: s = 0 (an empty dot product), y has no elements
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(s, 0, floats(B), stream_of(ctx)));
    return;
  }
  cross_forward_kernel<<<warp_grid(B), kBlock, 0, stream_of(ctx)>>>(B, n, x0, xl, w, b, y, s);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

// Two kernels and two column sums: rows (ds, dx0), then columns (dxl and the chunk partials of
// dw, db), then bias_grad sums the partials over chunks into dw and db (accumulating). All reads
// of dy by the first kernel precede the writes of dxl by the second (stream order).
void cross_backward(const Context& ctx, int64_t B, int64_t n, const float* x0, const float* xl,
                    const float* w, const float* s, const float* dy, float* dx0, float* dxl,
                    float* dw, float* db) {
  if (B == 0 || n == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  const int64_t chunks = ceil_div(B, kCrossChunk);
  WorkspaceLayout layout;
  const size_t ds_at = layout.reserve(floats(B));
  const size_t dw_at = layout.reserve(floats(chunks * n));
  const size_t db_at = layout.reserve(floats(chunks * n));
  void* base = ctx.workspace(layout.bytes());
  float* ds = at<float>(base, ds_at);
  float* part_dw = at<float>(base, dw_at);
  float* part_db = at<float>(base, db_at);

  cross_backward_rows_kernel<<<warp_grid(B), kBlock, 0, stream>>>(B, n, x0, s, dy, dx0, ds);
  LOCKSTEP_KERNEL_CHECK(ctx, "cross_backward(rows)");
  cross_backward_columns_kernel<<<grid_for(chunks * n), kBlock, 0, stream>>>(B, n, xl, w, ds, dy,
                                                                             dxl, part_dw, part_db);
  LOCKSTEP_KERNEL_CHECK(ctx, "cross_backward(columns)");
  cuda::bias_grad(ctx, chunks, n, part_dw, dw);
  cuda::bias_grad(ctx, chunks, n, part_db, db);
}

// ---- Squared error ---------------------------------------------------------------------------

void squared_error(const Context& ctx, int64_t rows, int64_t n, const float* a, int64_t lda,
                   const float* t, int64_t ldt, float grad_scale, float* loss, float* da,
                   int64_t ldda) {
  constexpr const char* op = "squared_error";
  if (rows == 0 || (loss == nullptr && da == nullptr)) return;
  if (n == 0) {  // empty rows: loss = 0, da has no elements
    if (loss != nullptr)
      LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(loss, 0, floats(rows), stream_of(ctx)));
    return;
  }
  squared_error_kernel<<<warp_grid(rows), kBlock, 0, stream_of(ctx)>>>(rows, n, a, lda, t, ldt,
                                                                       grad_scale, loss, da, ldda);
  LOCKSTEP_KERNEL_CHECK(ctx, op);
}

}  // namespace lockstep::kernels::cuda

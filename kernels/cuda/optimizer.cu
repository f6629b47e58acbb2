// CUDA fused optimizer updates (kernels/optimizer.h), float.
//
// Each kernel fuses the gradient scaling, the state update and the parameter update of one
// rule into a single pass over memory (these updates are bandwidth-bound: one read and one
// write of every buffer is the minimum). Results match the CPU reference to rounding, not
// bitwise: nvcc contracts multiply-adds into FMAs and sqrt/division round differently from the
// host. Every element's arithmetic is fixed, and the one reduction (row-wise Adagrad) uses a
// fixed butterfly order, so runs are bitwise reproducible. Sizes and steps are validated by the
// dispatcher. The sparse kernels check what lives on the device as the CPU checks it: a
// *num_unique outside [0, max_unique] makes them change nothing, a unique id >= rows skips its
// row, and either is recorded in the context's device error record (kernels/cuda/
// input_errors.cuh) for the host to throw with the CPU's message; no bad value ever reads or
// writes past max_unique rows of the inputs or past the table and its state.

#include <cmath>

#include "kernels/cuda/input_errors.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp.cuh"
#include "kernels/optimizer.h"

namespace lockstep::kernels::cuda {

namespace {

// Adam's parameters with the bias corrections 1 - beta^step, which the host computes in
// double exactly as the CPU reference does.
struct AdamArgs {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2;
};

AdamArgs adam_args(const AdamHyper& h, int64_t step) {
  const auto bias_correction = [step](float beta) {
    return static_cast<float>(1.0 - std::pow(static_cast<double>(beta), static_cast<double>(step)));
  };
  return {h.lr,
          h.beta1,
          h.beta2,
          h.eps,
          h.weight_decay,
          bias_correction(h.beta1),
          bias_correction(h.beta2)};
}

// Adam on one element, g already scaled; shared by the dense and the sparse kernel.
__device__ __forceinline__ void adam_step(const AdamArgs& a, float g, float& p, float& m,
                                          float& v) {
  m = a.beta1 * m + (1.0f - a.beta1) * g;
  v = a.beta2 * v + (1.0f - a.beta2) * g * g;
  const float m_hat = m / a.bc1, v_hat = v / a.bc2;
  // Decoupled weight decay (AdamW) uses the parameter before this step's update.
  p -= a.lr * m_hat / (sqrtf(v_hat) + a.eps) + a.lr * a.weight_decay * p;
}

// SGD over n elements; velocity is only touched (and may be nullptr) when momentum == 0.
__global__ void sgd_kernel(SgdHyper h, float grad_scale, int64_t n, float* __restrict__ param,
                           const float* __restrict__ grad, float* __restrict__ velocity) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad_scale * grad[i] + h.weight_decay * param[i];
    if (h.momentum == 0.0f) {
      param[i] -= h.lr * g;
      continue;
    }
    const float v = h.momentum * velocity[i] + g;
    velocity[i] = v;
    param[i] -= h.lr * (h.nesterov ? g + h.momentum * v : v);
  }
}

__global__ void adam_kernel(AdamArgs a, float grad_scale, int64_t n, float* __restrict__ param,
                            const float* __restrict__ grad, float* __restrict__ m,
                            float* __restrict__ v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adam_step(a, grad_scale * grad[i], param[i], m[i], v[i]);
}

__global__ void adagrad_kernel(AdagradHyper h, float grad_scale, int64_t n,
                               float* __restrict__ param, const float* __restrict__ grad,
                               float* __restrict__ accum) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad_scale * grad[i];
    const float acc = accum[i] + g * g;
    accum[i] = acc;
    param[i] -= h.lr * g / (sqrtf(acc) + h.eps);
  }
}

// The rows a sparse update applies: *num_unique, or -1 when this launch must change nothing:
// an earlier kernel on the context recorded an error that is not reported yet, or the count is
// outside [0, max_unique] (recorded here, by one thread). The same value in every thread.
__device__ __forceinline__ int64_t checked_num_unique(const ErrorSink& sink,
                                                      const int64_t* num_unique,
                                                      int64_t max_unique) {
  if (error_recorded_before(sink)) return -1;
  const int64_t unique = *num_unique;
  if (unique >= 0 && unique <= max_unique) return unique;
  if (blockIdx.x == 0 && threadIdx.x == 0)
    record_input_error(sink, InputError::CountOutOfRange, 0, unique, max_unique);
  return -1;
}

// Row-wise Adagrad: one warp per touched row u < *num_unique, lanes over dim. The row's mean of
// g^2 is a per-lane sequential sum followed by a butterfly reduction, so its bits are fixed
// run-to-run (and equal in every lane). The warp count is launched for max_unique rows; warps
// past *num_unique exit at once, whole warps at a time. A row whose id is >= rows is skipped by
// the whole warp (every lane reads the same id) and recorded in `sink`.
//   unique_ids: (num_unique); grad_rows: (num_unique, dim); table: (rows, dim); accum: (rows)
__global__ void sparse_adagrad_kernel(ErrorSink sink, AdagradHyper h, float grad_scale, int64_t dim,
                                      const int64_t* __restrict__ num_unique, int64_t max_unique,
                                      const uint64_t* __restrict__ unique_ids,
                                      const float* __restrict__ grad_rows,
                                      float* __restrict__ table, int64_t rows,
                                      float* __restrict__ accum) {
  const int64_t unique = checked_num_unique(sink, num_unique, max_unique);
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  for (int64_t u = blockIdx.x * warps_per_block + threadIdx.x / kWarp; u < unique;
       u += int64_t(gridDim.x) * warps_per_block) {
    const uint64_t id = unique_ids[u];
    if (id >= static_cast<uint64_t>(rows)) {
      if (lane == 0)
        record_input_error(sink, InputError::UniqueIdOutOfRange, u, u, static_cast<int64_t>(id),
                           rows);
      continue;
    }
    if (dim == 0) continue;  // ids checked, nothing to update (and no 0 / 0 in accum)
    const float* grad_row = grad_rows + u * dim;
    const int64_t r = static_cast<int64_t>(id);
    float sum_sq = 0.0f;
    for (int64_t d = lane; d < dim; d += kWarp) {
      const float g = grad_scale * grad_row[d];
      sum_sq += g * g;
    }
    sum_sq = warp_sum(sum_sq);
    // Lane 0 owns the row's accumulator; the others get the new value by shuffle.
    float acc = 0.0f;
    if (lane == 0) {
      acc = accum[r] + sum_sq / static_cast<float>(dim);
      accum[r] = acc;
    }
    acc = __shfl_sync(kFullMask, acc, 0);
    const float denom = sqrtf(acc) + h.eps;
    float* row = table + r * dim;
    for (int64_t d = lane; d < dim; d += kWarp) row[d] -= h.lr * (grad_scale * grad_row[d]) / denom;
  }
}

// Sparse (lazy) Adam: element-wise over the first *num_unique rows of grad_rows, each applied
// to table/m/v row unique_ids[u] (skipped, and recorded in `sink`, when it is >= rows).
// Launched for max_unique rows.
__global__ void sparse_adam_kernel(ErrorSink sink, AdamArgs a, float grad_scale, int64_t dim,
                                   const int64_t* __restrict__ num_unique, int64_t max_unique,
                                   const uint64_t* __restrict__ unique_ids,
                                   const float* __restrict__ grad_rows, float* __restrict__ table,
                                   int64_t rows, float* __restrict__ m, float* __restrict__ v) {
  const int64_t unique = checked_num_unique(sink, num_unique, max_unique);
  const int64_t width = dim > 0 ? dim : 1;  // dim == 0: one thread per row checks its id
  const int64_t n = unique > 0 ? unique * width : 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t u = i / width, d = i - u * width;
    const uint64_t id = unique_ids[u];
    if (id >= static_cast<uint64_t>(rows)) {
      if (d == 0)
        record_input_error(sink, InputError::UniqueIdOutOfRange, u, u, static_cast<int64_t>(id),
                           rows);
      continue;
    }
    if (dim == 0) continue;
    const int64_t at = static_cast<int64_t>(id) * dim + d;
    adam_step(a, grad_scale * grad_rows[i], table[at], m[at], v[at]);
  }
}

}  // namespace

void sgd_update(const Context& ctx, const SgdHyper& h, float grad_scale, int64_t n, float* param,
                const float* grad, float* velocity) {
  if (n == 0) return;
  sgd_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(h, grad_scale, n, param, grad, velocity);
  LOCKSTEP_KERNEL_CHECK(ctx, "sgd_update");
}

void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, float grad_scale, int64_t n,
                 float* param, const float* grad, float* m, float* v) {
  const AdamArgs args = adam_args(h, step);
  if (n == 0) return;
  adam_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(args, grad_scale, n, param, grad, m, v);
  LOCKSTEP_KERNEL_CHECK(ctx, "adam_update");
}

void adagrad_update(const Context& ctx, const AdagradHyper& h, float grad_scale, int64_t n,
                    float* param, const float* grad, float* accum) {
  if (n == 0) return;
  adagrad_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(h, grad_scale, n, param, grad, accum);
  LOCKSTEP_KERNEL_CHECK(ctx, "adagrad_update");
}

void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, float grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const float* grad_rows, float* table,
                           int64_t rows, float* accum) {
  // dim == 0 changes nothing, but the count and the ids are still checked, as on the CPU.
  sparse_adagrad_kernel<<<grid_for(std::max<int64_t>(max_unique, 1) * kWarp), kBlock, 0,
                          stream_of(ctx)>>>(error_sink(ctx, "sparse_adagrad_update"), h, grad_scale,
                                            dim, num_unique, max_unique, unique_ids, grad_rows,
                                            table, rows, accum);
  LOCKSTEP_KERNEL_CHECK(ctx, "sparse_adagrad_update");
}

void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, float grad_scale,
                        int64_t dim, const int64_t* num_unique, int64_t max_unique,
                        const uint64_t* unique_ids, const float* grad_rows, float* table,
                        int64_t rows, float* m, float* v) {
  const AdamArgs args = adam_args(h, step);
  sparse_adam_kernel<<<grid_for(std::max<int64_t>(max_unique, 1) * std::max<int64_t>(dim, 1)),
                       kBlock, 0, stream_of(ctx)>>>(error_sink(ctx, "sparse_adam_update"), args,
                                                    grad_scale, dim, num_unique, max_unique,
                                                    unique_ids, grad_rows, table, rows, m, v);
  LOCKSTEP_KERNEL_CHECK(ctx, "sparse_adam_update");
}

}  // namespace lockstep::kernels::cuda

#pragma once
// Fused optimizer updates: dense ones over a flat parameter buffer, sparse row-wise ones over
// the embedding rows a batch touched.
//
// Every update first scales the raw gradient: g = grad_scale * grad. The lockstep trainer
// passes grad_scale = 1 / (global sample count of the step) so that the applied gradient is
// the exact per-sample mean over all ranks' batches.

#include "kernels/common.h"

namespace lockstep::kernels {

struct SgdHyper {
  float lr = 0.01f;
  float momentum = 0.0f;      // 0 disables the velocity buffer
  float weight_decay = 0.0f;  // L2: g += weight_decay * param
  bool nesterov = false;
};

struct AdamHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled (AdamW): param -= lr * weight_decay * param
};

struct AdagradHyper {
  float lr = 0.01f;
  float eps = 1e-10f;
};

// ---- Dense, element-wise over n parameters (param, grad and state: (n)).
// SGD:     g += wd * p;  v = momentum * v + g;  p -= lr * (nesterov ? g + momentum * v : v)
//          (momentum == 0: p -= lr * g, velocity may be nullptr)
// Adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//          p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps) + lr * wd * p
//          (step counts from 1)
// Adagrad: acc += g^2;  p -= lr * g / (sqrt(acc) + eps)
namespace cpu {
template <class T>
void sgd_update(const Context& ctx, const SgdHyper& h, T grad_scale, int64_t n, T* param,
                const T* grad, T* velocity);
template <class T>
void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale, int64_t n,
                 T* param, const T* grad, T* m, T* v);
template <class T>
void adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t n, T* param,
                    const T* grad, T* accum);
}  // namespace cpu
namespace cuda {
void sgd_update(const Context& ctx, const SgdHyper& h, float grad_scale, int64_t n, float* param,
                const float* grad, float* velocity);
void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, float grad_scale, int64_t n,
                 float* param, const float* grad, float* m, float* v);
void adagrad_update(const Context& ctx, const AdagradHyper& h, float grad_scale, int64_t n,
                    float* param, const float* grad, float* accum);
}  // namespace cuda
template <class T>
void sgd_update(const Context& ctx, const SgdHyper& h, T grad_scale, int64_t n, T* param,
                const T* grad, T* velocity) {
  LOCKSTEP_DISPATCH(T, ctx, sgd_update, h, grad_scale, n, param, grad, velocity);
}
template <class T>
void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale, int64_t n,
                 T* param, const T* grad, T* m, T* v) {
  LOCKSTEP_DISPATCH(T, ctx, adam_update, h, step, grad_scale, n, param, grad, m, v);
}
template <class T>
void adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t n, T* param,
                    const T* grad, T* accum) {
  LOCKSTEP_DISPATCH(T, ctx, adagrad_update, h, grad_scale, n, param, grad, accum);
}

// ---- Sparse, over the U = *num_unique rows of a pooled_lookup_backward result.
//   num_unique: one element in ctx's device memory (host on the CPU); max_unique >= U bounds the
//               launch so CUDA needs no synchronisation
//   unique_ids: (U) row indices into table; grad_rows: (U, dim)
//   table: (rows, dim); untouched rows and their state are not modified (lazy updates).
// Row-wise Adagrad keeps ONE accumulator per row (accum: (rows)):
//   acc[r] += mean_d(g[d]^2);  table[r, d] -= lr * g[d] / (sqrt(acc[r]) + eps)
// Sparse Adam keeps m, v: (rows, dim) and applies the dense Adam rule to touched rows only,
// with bias correction from the global `step` (LazyAdam semantics).
namespace cpu {
template <class T>
void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const T* grad_rows, T* table, T* accum);
template <class T>
void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale,
                        int64_t dim, const int64_t* num_unique, int64_t max_unique,
                        const uint64_t* unique_ids, const T* grad_rows, T* table, T* m, T* v);
}  // namespace cpu
namespace cuda {
void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, float grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const float* grad_rows, float* table,
                           float* accum);
void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, float grad_scale,
                        int64_t dim, const int64_t* num_unique, int64_t max_unique,
                        const uint64_t* unique_ids, const float* grad_rows, float* table, float* m,
                        float* v);
}  // namespace cuda
template <class T>
void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const T* grad_rows, T* table, T* accum) {
  LOCKSTEP_DISPATCH(T, ctx, sparse_adagrad_update, h, grad_scale, dim, num_unique, max_unique,
                    unique_ids, grad_rows, table, accum);
}
template <class T>
void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale,
                        int64_t dim, const int64_t* num_unique, int64_t max_unique,
                        const uint64_t* unique_ids, const T* grad_rows, T* table, T* m, T* v) {
  LOCKSTEP_DISPATCH(T, ctx, sparse_adam_update, h, step, grad_scale, dim, num_unique, max_unique,
                    unique_ids, grad_rows, table, m, v);
}

}  // namespace lockstep::kernels

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

// Their hashes as kernel arguments (lockstep/core/launch_recorder.h).
inline uint64_t launch_hash(const SgdHyper& h) {
  return LaunchRecorder::hash_fields(h.lr, h.momentum, h.weight_decay, h.nesterov);
}
inline uint64_t launch_hash(const AdamHyper& h) {
  return LaunchRecorder::hash_fields(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay);
}
inline uint64_t launch_hash(const AdagradHyper& h) {
  return LaunchRecorder::hash_fields(h.lr, h.eps);
}

// ---- Dense, element-wise over n parameters (param, grad and state: (n)).
// SGD:     g += wd * p;  v = momentum * v + g;  p -= lr * (nesterov ? g + momentum * v : v)
//          (momentum == 0: p -= lr * g, velocity may be nullptr)
// Adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//          p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps) + lr * wd * p
//          (step counts from 1)
// Adagrad: acc += g^2;  p -= lr * g / (sqrt(acc) + eps)
LOCKSTEP_KERNEL_IMPLS(sgd_update, const Context& ctx, const SgdHyper& h, T grad_scale, int64_t n,
                      T* param, const T* grad, T* velocity)
LOCKSTEP_KERNEL_IMPLS(adam_update, const Context& ctx, const AdamHyper& h, int64_t step,
                      T grad_scale, int64_t n, T* param, const T* grad, T* m, T* v)
LOCKSTEP_KERNEL_IMPLS(adagrad_update, const Context& ctx, const AdagradHyper& h, T grad_scale,
                      int64_t n, T* param, const T* grad, T* accum)
namespace detail {
inline void check_sgd_update(const SgdHyper& h, int64_t n, bool has_velocity) {
  LOCKSTEP_CHECK(n >= 0, "sgd_update: negative size n={}", n);
  LOCKSTEP_CHECK(h.momentum == 0.0f || has_velocity,
                 "sgd_update: momentum = {} needs a velocity buffer", h.momentum);
}
inline void check_adam_step(const char* op, int64_t step) {
  LOCKSTEP_CHECK(step >= 1, "{}: step = {} but Adam steps count from 1", op, step);
}
inline void check_adam_update(int64_t step, int64_t n) {
  LOCKSTEP_CHECK(n >= 0, "adam_update: negative size n={}", n);
  check_adam_step("adam_update", step);
}
inline void check_adagrad_update(int64_t n) {
  LOCKSTEP_CHECK(n >= 0, "adagrad_update: negative size n={}", n);
}
}  // namespace detail
template <class T>
void sgd_update(const Context& ctx, const SgdHyper& h, T grad_scale, int64_t n, T* param,
                const T* grad, T* velocity) {
  detail::check_sgd_update(h, n, velocity != nullptr);
  LOCKSTEP_DISPATCH(T, ctx, sgd_update, h, grad_scale, n, param, grad, velocity);
}
template <class T>
void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale, int64_t n,
                 T* param, const T* grad, T* m, T* v) {
  detail::check_adam_update(step, n);
  LOCKSTEP_DISPATCH(T, ctx, adam_update, h, step, grad_scale, n, param, grad, m, v);
}
template <class T>
void adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t n, T* param,
                    const T* grad, T* accum) {
  detail::check_adagrad_update(n);
  LOCKSTEP_DISPATCH(T, ctx, adagrad_update, h, grad_scale, n, param, grad, accum);
}

// ---- Sparse, over the U = *num_unique rows of a pooled_lookup_backward result.
//   num_unique: one element in ctx's device memory (host on the CPU); max_unique bounds U, so
//               that the CUDA launch needs no synchronisation.
//   unique_ids: (U) distinct row indices into table, each < rows; grad_rows: (U, dim)
//   table: (rows, dim); untouched rows and their state are not modified (lazy updates).
// Row-wise Adagrad keeps ONE accumulator per row (accum: (rows)):
//   acc[r] += mean_d(g[d]^2);  table[r, d] -= lr * g[d] / (sqrt(acc[r]) + eps)
// Sparse Adam keeps m, v: (rows, dim) and applies the dense Adam rule to touched rows only,
// with bias correction from the global `step` (LazyAdam semantics).
// Invalid input (kernels/input_errors.h): U outside [0, max_unique], or a unique id >= rows.
// The CPU reference checks all of it first and throws lockstep::Error without writing. CUDA
// records the same error in ctx's device error record (thrown with the same message by the next
// to_host() or ctx.check_device_errors()): for a bad U it updates nothing; a row with a bad id
// is skipped while the other listed rows are updated; nothing past max_unique rows of the
// inputs or past `rows` rows of the table and its state is ever read or written. A CUDA update
// also changes nothing while an error recorded by an earlier kernel on ctx is unreported (a
// forward that found a bad id), as the CPU would have stopped at that error.
LOCKSTEP_KERNEL_IMPLS(sparse_adagrad_update, const Context& ctx, const AdagradHyper& h,
                      T grad_scale, int64_t dim, const int64_t* num_unique, int64_t max_unique,
                      const uint64_t* unique_ids, const T* grad_rows, T* table, int64_t rows,
                      T* accum)
LOCKSTEP_KERNEL_IMPLS(sparse_adam_update, const Context& ctx, const AdamHyper& h, int64_t step,
                      T grad_scale, int64_t dim, const int64_t* num_unique, int64_t max_unique,
                      const uint64_t* unique_ids, const T* grad_rows, T* table, int64_t rows, T* m,
                      T* v)
namespace detail {
inline void check_sparse_update(const char* op, int64_t dim, int64_t max_unique, int64_t rows) {
  LOCKSTEP_CHECK(dim >= 0 && max_unique >= 0 && rows >= 0,
                 "{}: negative size dim={} max_unique={} rows={}", op, dim, max_unique, rows);
}
}  // namespace detail
template <class T>
void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const T* grad_rows, T* table, int64_t rows,
                           T* accum) {
  detail::check_sparse_update("sparse_adagrad_update", dim, max_unique, rows);
  LOCKSTEP_DISPATCH(T, ctx, sparse_adagrad_update, h, grad_scale, dim, num_unique, max_unique,
                    unique_ids, grad_rows, table, rows, accum);
}
template <class T>
void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale,
                        int64_t dim, const int64_t* num_unique, int64_t max_unique,
                        const uint64_t* unique_ids, const T* grad_rows, T* table, int64_t rows,
                        T* m, T* v) {
  detail::check_sparse_update("sparse_adam_update", dim, max_unique, rows);
  detail::check_adam_step("sparse_adam_update", step);
  LOCKSTEP_DISPATCH(T, ctx, sparse_adam_update, h, step, grad_scale, dim, num_unique, max_unique,
                    unique_ids, grad_rows, table, rows, m, v);
}

}  // namespace lockstep::kernels

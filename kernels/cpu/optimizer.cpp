// CPU reference for the fused optimizer updates (kernels/optimizer.h).
//
// Each rule is written once per element (sgd_step, adam_step, ...) and used by both the dense
// and the sparse update, so that sparse Adam over all rows is dense Adam, bit for bit.

#include "kernels/optimizer.h"
#include "kernels/cpu/parallel.h"

#include <cmath>

#include "kernels/input_errors.h"

namespace lockstep::kernels::cpu {

namespace {

// 1 - beta^step, computed in double for every element type and every device (the CUDA launcher
// computes the same value on the host), so CPU and CUDA start from identical bias corrections.
double bias_correction(float beta, int64_t step) {
  return 1.0 - std::pow(static_cast<double>(beta), static_cast<double>(step));
}

// Adam on one element, g already scaled. bc1, bc2: the bias corrections 1 - beta^step.
template <class T>
void adam_step(const AdamHyper& h, T bc1, T bc2, T g, T& p, T& m, T& v) {
  const T b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2);
  const T lr = static_cast<T>(h.lr);
  m = b1 * m + (T(1) - b1) * g;
  v = b2 * v + (T(1) - b2) * g * g;
  const T m_hat = m / bc1, v_hat = v / bc2;
  // Decoupled weight decay (AdamW) uses the parameter before this step's update.
  p -= lr * m_hat / (std::sqrt(v_hat) + static_cast<T>(h.eps)) +
       lr * static_cast<T>(h.weight_decay) * p;
}

}  // namespace

template <class T>
void sgd_update(const Context&, const SgdHyper& h, T grad_scale, int64_t n, T* param, const T* grad,
                T* velocity) {
  const T lr = static_cast<T>(h.lr), mu = static_cast<T>(h.momentum);
  const T wd = static_cast<T>(h.weight_decay);
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad_scale * grad[i] + wd * param[i];  // L2 weight decay joins the gradient
    if (h.momentum == 0.0f) {
      param[i] -= lr * g;
      continue;
    }
    const T v = mu * velocity[i] + g;
    velocity[i] = v;
    param[i] -= lr * (h.nesterov ? g + mu * v : v);
  }
}

template <class T>
void adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale, int64_t n,
                 T* param, const T* grad, T* m, T* v) {
  const T bc1 = static_cast<T>(bias_correction(h.beta1, step));
  const T bc2 = static_cast<T>(bias_correction(h.beta2, step));
  parallel_for(ctx, n, grain_for(8), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      adam_step(h, bc1, bc2, grad_scale * grad[i], param[i], m[i], v[i]);
  });
}

template <class T>
void adagrad_update(const Context&, const AdagradHyper& h, T grad_scale, int64_t n, T* param,
                    const T* grad, T* accum) {
  const T lr = static_cast<T>(h.lr), eps = static_cast<T>(h.eps);
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad_scale * grad[i];
    accum[i] += g * g;
    param[i] -= lr * g / (std::sqrt(accum[i]) + eps);
  }
}

namespace {
// Sparse updates ask for the row this many distinct ids ahead while they update one (as the
// pooled lookups do): the rows are scattered over tables far larger than the caches.
constexpr int64_t kPrefetchRows = 8;

// The number of rows a sparse update applies, *num_unique, after the checks of its input
// (readable here, in host memory; sizes and steps are validated by the dispatcher): the count
// must fit the caller's bound and every listed id must be a row of the table. Everything is
// checked before anything is written, so a bad update leaves the table and its state as they
// were. The messages are those of kernels/input_errors.h, which the CUDA kernels report too.
int64_t checked_num_unique(const char* op, const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, int64_t rows) {
  const int64_t count = *num_unique;
  if (count < 0 || count > max_unique)
    throw Error(count_out_of_range_message(op, count, max_unique));
  for (int64_t u = 0; u < count; ++u) {
    if (unique_ids[u] >= static_cast<uint64_t>(rows))
      throw Error(unique_id_out_of_range_message(op, u, unique_ids[u], rows));
  }
  return count;
}
}  // namespace

template <class T>
void sparse_adagrad_update(const Context& ctx, const AdagradHyper& h, T grad_scale, int64_t dim,
                           const int64_t* num_unique, int64_t max_unique,
                           const uint64_t* unique_ids, const T* grad_rows, T* table, int64_t rows,
                           T* accum) {
  const int64_t count =
      checked_num_unique("sparse_adagrad_update", num_unique, max_unique, unique_ids, rows);
  if (dim == 0) return;
  const T lr = static_cast<T>(h.lr), eps = static_cast<T>(h.eps);
  // Distinct ids: the rows are independent.
  parallel_for(ctx, count, grain_for(4 * dim), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      if (u + kPrefetchRows < count) {  // rows scattered over a large table: ask ahead
        const int64_t ahead = static_cast<int64_t>(unique_ids[u + kPrefetchRows]);
        __builtin_prefetch(table + ahead * dim, 1);
        __builtin_prefetch(accum + ahead, 1);
      }
      const T* grad_row = grad_rows + u * dim;
      const int64_t r = static_cast<int64_t>(unique_ids[u]);
      T* row = table + r * dim;
      // One accumulator per row: the mean over the row of the squared scaled gradient.
      T sum_sq = T(0);
      for (int64_t d = 0; d < dim; ++d) {
        const T g = grad_scale * grad_row[d];
        sum_sq += g * g;
      }
      accum[r] += sum_sq / static_cast<T>(dim);
      const T denom = std::sqrt(accum[r]) + eps;
      for (int64_t d = 0; d < dim; ++d) row[d] -= lr * (grad_scale * grad_row[d]) / denom;
    }
  });
}

template <class T>
void sparse_adam_update(const Context& ctx, const AdamHyper& h, int64_t step, T grad_scale, int64_t dim,
                        const int64_t* num_unique, int64_t max_unique, const uint64_t* unique_ids,
                        const T* grad_rows, T* table, int64_t rows, T* m, T* v) {
  const int64_t count =
      checked_num_unique("sparse_adam_update", num_unique, max_unique, unique_ids, rows);
  const T bc1 = static_cast<T>(bias_correction(h.beta1, step));
  const T bc2 = static_cast<T>(bias_correction(h.beta2, step));
  parallel_for(ctx, count, grain_for(8 * dim), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      if (u + kPrefetchRows < count) {  // rows scattered over large tables: ask ahead
        const int64_t ahead = static_cast<int64_t>(unique_ids[u + kPrefetchRows]) * dim;
        __builtin_prefetch(table + ahead, 1);
        __builtin_prefetch(m + ahead, 1);
        __builtin_prefetch(v + ahead, 1);
      }
      const int64_t base = static_cast<int64_t>(unique_ids[u]) * dim;
      for (int64_t d = 0; d < dim; ++d) {
        adam_step(h, bc1, bc2, grad_scale * grad_rows[u * dim + d], table[base + d], m[base + d],
                  v[base + d]);
      }
    }
  });
}

#define LOCKSTEP_INSTANTIATE(T)                                                                  \
  template void sgd_update<T>(const Context&, const SgdHyper&, T, int64_t, T*, const T*, T*);    \
  template void adam_update<T>(const Context&, const AdamHyper&, int64_t, T, int64_t, T*,        \
                               const T*, T*, T*);                                                \
  template void adagrad_update<T>(const Context&, const AdagradHyper&, T, int64_t, T*, const T*, \
                                  T*);                                                           \
  template void sparse_adagrad_update<T>(const Context&, const AdagradHyper&, T, int64_t,        \
                                         const int64_t*, int64_t, const uint64_t*, const T*, T*, \
                                         int64_t, T*);                                           \
  template void sparse_adam_update<T>(const Context&, const AdamHyper&, int64_t, T, int64_t,     \
                                      const int64_t*, int64_t, const uint64_t*, const T*, T*,    \
                                      int64_t, T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

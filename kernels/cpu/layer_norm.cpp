// CPU reference for layer normalisation (kernels/layer_norm.h). Sizes are validated by the
// dispatcher. The statistics and the parameter-gradient column sums accumulate in double in a
// fixed order: deterministic, and for T = float more accurate than the data type.

#include "kernels/layer_norm.h"
#include "kernels/cpu/parallel.h"

#include <cmath>
#include <vector>

namespace lockstep::kernels::cpu {

template <class T>
void layer_norm_forward(const Context& ctx, int64_t rows, int64_t n, T eps, const T* x,
                        const T* gamma, const T* beta, T* y, T* mean, T* rstd) {
  parallel_for(ctx, rows, grain_for(3 * n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x_row = x + r * n;
      // Two passes (mean, then squared deviations): no cancellation as in E[x²] − E[x]².
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(x_row[j]);
      const T m = static_cast<T>(sum / static_cast<double>(n));
      double sq = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const double d = static_cast<double>(x_row[j]) - static_cast<double>(m);
        sq += d * d;
      }
      const T var = static_cast<T>(sq / static_cast<double>(n));
      const T s = T(1) / std::sqrt(var + eps);
      mean[r] = m;
      rstd[r] = s;
      // The elementwise part uses the stored (type T) statistics, exactly as the backward will.
      T* y_row = y + r * n;
      for (int64_t j = 0; j < n; ++j) y_row[j] = (x_row[j] - m) * s * gamma[j] + beta[j];
    }
  });
}

// With xhat = (x − mean)·rstd and g = dy ⊙ gamma:
//   dx = rstd · (g − mean_j(g) − xhat · mean_j(g ⊙ xhat)),
//   dgamma += Σ_rows dy ⊙ xhat,  dbeta += Σ_rows dy.
template <class T>
void layer_norm_backward(const Context& ctx, int64_t rows, int64_t n, const T* x, const T* gamma,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
  if (rows == 0 || n == 0) return;
  // dgamma, dbeta: double sums per column (dgamma's n, then dbeta's n) in fixed blocks of rows,
  // added in block order.
  const auto add_block = [&](int64_t r0, int64_t r1, double* dgamma_sum) {
    double* dbeta_sum = dgamma_sum + n;
    for (int64_t r = r0; r < r1; ++r) {
      const T* x_row = x + r * n;
      const T* dy_row = dy + r * n;
      const T m = mean[r], s = rstd[r];
      double sum_g = 0.0, sum_g_xhat = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        const T xhat = (x_row[j] - m) * s;
        const T g = dy_row[j] * gamma[j];
        sum_g += static_cast<double>(g);
        sum_g_xhat += static_cast<double>(g) * static_cast<double>(xhat);
        dgamma_sum[j] += static_cast<double>(dy_row[j]) * static_cast<double>(xhat);
        dbeta_sum[j] += static_cast<double>(dy_row[j]);
      }
      const T mean_g = static_cast<T>(sum_g / static_cast<double>(n));
      const T mean_g_xhat = static_cast<T>(sum_g_xhat / static_cast<double>(n));
      T* dx_row = dx + r * n;
      for (int64_t j = 0; j < n; ++j) {  // dx may alias dy: this row's dy is no longer needed after
        const T xhat = (x_row[j] - m) * s;
        const T g = dy_row[j] * gamma[j];
        dx_row[j] = s * (g - mean_g - xhat * mean_g_xhat);
      }
    }
  };
  column_sums(ctx, rows, grain_for(4 * n), 2 * n, add_block, [&](int64_t c, double total) {
    (c < n ? dgamma[c] : dbeta[c - n]) += static_cast<T>(total);
  });
}

#define LOCKSTEP_INSTANTIATE(T)                                                                \
  template void layer_norm_forward<T>(const Context&, int64_t, int64_t, T, const T*, const T*, \
                                      const T*, T*, T*, T*);                                   \
  template void layer_norm_backward<T>(const Context&, int64_t, int64_t, const T*, const T*,   \
                                       const T*, const T*, const T*, T*, T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

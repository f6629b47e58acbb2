// CPU reference for the feature-interaction kernels (kernels/interaction.h): FM bi-interaction,
// DCN cross layer, squared error.
//
// Every reduction (sums over fields, row dot products, column sums over the batch, row sums of
// squares) accumulates in double in a fixed order: deterministic, and for T = float more
// accurate than the data type, so that it can serve as the reference of the CUDA parity tests.
// Elementwise results that use a saved or reduced value (y = x0·s + b + xl, dxl = dy + ds·w,
// da = grad_scale·(a − t)) are computed in T from the T-rounded value, as the CUDA kernels do.
// Sizes and strides are validated by the dispatcher.

#include "kernels/interaction.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <vector>

namespace lockstep::kernels::cpu {

// ---- FM bi-interaction ----------------------------------------------------------------------

template <class T>
void fm_forward(const Context&, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv, T* out,
                int64_t ldo) {
  if (B == 0 || D == 0) return;
  LOCKSTEP_KEPT_VECTOR(double, sum);
  LOCKSTEP_KEPT_VECTOR(double, sum_sq);
  sum.resize(static_cast<size_t>(D));
  sum_sq.resize(static_cast<size_t>(D));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(sum_sq.begin(), sum_sq.end(), 0.0);
    const T* row = v + b * ldv;
    for (int64_t f = 0; f < F; ++f)  // fields in increasing order
      for (int64_t d = 0; d < D; ++d) {
        const double x = static_cast<double>(row[f * D + d]);
        sum[d] += x;
        sum_sq[d] += x * x;
      }
    T* out_row = out + b * ldo;
    for (int64_t d = 0; d < D; ++d)
      out_row[d] = static_cast<T>(0.5 * (sum[d] * sum[d] - sum_sq[d]));
  }
}

template <class T>
void fm_backward(const Context&, int64_t B, int64_t F, int64_t D, const T* v, int64_t ldv,
                 const T* dout, int64_t lddo, T* dv, int64_t lddv) {
  if (B == 0 || F == 0 || D == 0) return;
  LOCKSTEP_KEPT_VECTOR(double, sum);
  sum.resize(static_cast<size_t>(D));
  for (int64_t b = 0; b < B; ++b) {
    const T* row = v + b * ldv;
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t f = 0; f < F; ++f)
      for (int64_t d = 0; d < D; ++d) sum[d] += static_cast<double>(row[f * D + d]);
    const T* g = dout + b * lddo;
    T* dv_row = dv + b * lddv;
    for (int64_t f = 0; f < F; ++f)
      for (int64_t d = 0; d < D; ++d) {
        const double others = sum[d] - static_cast<double>(row[f * D + d]);
        dv_row[f * D + d] += static_cast<T>(static_cast<double>(g[d]) * others);
      }
  }
}

// ---- DCN cross layer ------------------------------------------------------------------------

template <class T>
void cross_forward(const Context&, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                   const T* b, T* y, T* s) {
  for (int64_t r = 0; r < B; ++r) {
    const T* x0_row = x0 + r * n;
    const T* xl_row = xl + r * n;
    double dot = 0.0;
    for (int64_t j = 0; j < n; ++j)
      dot += static_cast<double>(xl_row[j]) * static_cast<double>(w[j]);
    const T sr = static_cast<T>(dot);
    s[r] = sr;
    // y may alias xl: xl_row[j] is read before y_row[j] is written, and the dot is complete.
    T* y_row = y + r * n;
    for (int64_t j = 0; j < n; ++j) y_row[j] = x0_row[j] * sr + b[j] + xl_row[j];
  }
}

template <class T>
void cross_backward(const Context&, int64_t B, int64_t n, const T* x0, const T* xl, const T* w,
                    const T* s, const T* dy, T* dx0, T* dxl, T* dw, T* db) {
  if (B == 0 || n == 0) return;
  LOCKSTEP_KEPT_VECTOR(double, dw_sum);
  LOCKSTEP_KEPT_VECTOR(double, db_sum);
  dw_sum.assign(static_cast<size_t>(n), 0.0);
  db_sum.assign(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < B; ++r) {
    const T* x0_row = x0 + r * n;
    const T* xl_row = xl + r * n;
    const T* dy_row = dy + r * n;
    double dot = 0.0;
    for (int64_t j = 0; j < n; ++j)
      dot += static_cast<double>(dy_row[j]) * static_cast<double>(x0_row[j]);
    const T ds = static_cast<T>(dot);
    const T sr = s[r];
    T* dx0_row = dx0 + r * n;
    T* dxl_row = dxl + r * n;
    // dxl may alias dy: each dy_row[j] is consumed before dxl_row[j] overwrites it.
    for (int64_t j = 0; j < n; ++j) {
      const T g = dy_row[j];
      dx0_row[j] += g * sr;
      dw_sum[j] += static_cast<double>(ds) * static_cast<double>(xl_row[j]);
      db_sum[j] += static_cast<double>(g);
      dxl_row[j] = g + ds * w[j];
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    dw[j] += static_cast<T>(dw_sum[j]);
    db[j] += static_cast<T>(db_sum[j]);
  }
}

// ---- Squared error --------------------------------------------------------------------------

template <class T>
void squared_error(const Context&, int64_t rows, int64_t n, const T* a, int64_t lda, const T* t,
                   int64_t ldt, T grad_scale, T* loss, T* da, int64_t ldda) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* a_row = a + i * lda;
    const T* t_row = t + i * ldt;
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const T diff = a_row[j] - t_row[j];
      if (loss != nullptr) {
        // The difference of two floats is exact in double: the loss does not inherit T's rounding.
        const double e = static_cast<double>(a_row[j]) - static_cast<double>(t_row[j]);
        sum += e * e;
      }
      if (da != nullptr) da[i * ldda + j] = grad_scale * diff;  // after a_row[j] was read
    }
    if (loss != nullptr) loss[i] = static_cast<T>(0.5 * sum);
  }
}

// ---- Explicit instantiations ----------------------------------------------------------------

#define LOCKSTEP_INSTANTIATE(T)                                                                   \
  template void fm_forward<T>(const Context&, int64_t, int64_t, int64_t, const T*, int64_t, T*,   \
                              int64_t);                                                           \
  template void fm_backward<T>(const Context&, int64_t, int64_t, int64_t, const T*, int64_t,      \
                               const T*, int64_t, T*, int64_t);                                   \
  template void cross_forward<T>(const Context&, int64_t, int64_t, const T*, const T*, const T*,  \
                                 const T*, T*, T*);                                               \
  template void cross_backward<T>(const Context&, int64_t, int64_t, const T*, const T*, const T*, \
                                  const T*, const T*, T*, T*, T*, T*);                            \
  template void squared_error<T>(const Context&, int64_t, int64_t, const T*, int64_t, const T*,   \
                                 int64_t, T, T*, T*, int64_t);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

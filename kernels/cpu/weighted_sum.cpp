// CPU reference for the masked weighted sum over positions (kernels/weighted_sum.h). Sizes and
// strides are validated by the dispatcher; the lengths (host memory here) are checked below.

#include "kernels/weighted_sum.h"

#include <algorithm>

namespace lockstep::kernels::cpu {

template <class T>
void weighted_sum_forward(const Context&, int64_t B, int64_t Tn, int64_t D, const int64_t* lengths,
                          const T* w, const T* x, int64_t ldx, T* out, int64_t ldo) {
  constexpr const char* op = "weighted_sum_forward";
  detail::check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b) {
    T* out_row = out + b * ldo;
    std::fill(out_row, out_row + D, T(0));
    for (int64_t t = 0; t < lengths[b]; ++t) {
      const T wt = w[b * Tn + t];
      const T* x_row = x + (b * Tn + t) * ldx;
      for (int64_t d = 0; d < D; ++d) out_row[d] += wt * x_row[d];
    }
  }
}

template <class T>
void weighted_sum_backward(const Context&, int64_t B, int64_t Tn, int64_t D, const int64_t* lengths,
                           const T* w, const T* x, int64_t ldx, const T* dout, int64_t lddo, T* dw,
                           T* dx, int64_t lddx) {
  constexpr const char* op = "weighted_sum_backward";
  detail::check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b) {
    const T* g = dout + b * lddo;
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      if (t >= lengths[b]) {
        dw[r] = T(0);
        continue;
      }
      const T* x_row = x + r * ldx;
      T dot = T(0);
      for (int64_t d = 0; d < D; ++d) dot += g[d] * x_row[d];
      dw[r] = dot;
      if (dx != nullptr) {
        const T wt = w[r];
        for (int64_t d = 0; d < D; ++d) dx[r * lddx + d] += wt * g[d];
      }
    }
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                                                    \
  template void weighted_sum_forward<T>(const Context&, int64_t, int64_t, int64_t, const int64_t*, \
                                        const T*, const T*, int64_t, T*, int64_t);                 \
  template void weighted_sum_backward<T>(const Context&, int64_t, int64_t, int64_t,                \
                                         const int64_t*, const T*, const T*, int64_t, const T*,    \
                                         int64_t, T*, T*, int64_t);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

// CPU reference for the masked softmax and the padding mask (kernels/softmax.h). Sizes are
// validated by the dispatcher; the lengths (host memory here) are checked below. Softmax sums
// accumulate in double in a fixed order: deterministic, and for T = float more accurate than the
// data type.

#include "kernels/softmax.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cmath>

namespace lockstep::kernels::cpu {

template <class T>
void masked_softmax_forward(const Context& ctx, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const T* x, T* y) {
  constexpr const char* op = "masked_softmax_forward";
  detail::check_lengths(op, detail::softmax_samples(rows, group), lengths, n, "n");
  parallel_for(ctx, rows, grain_for(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t valid = lengths[r / group];
      const T* x_row = x + r * n;
      T* y_row = y + r * n;
      // Subtracting the row max keeps every exp argument <= 0: no overflow for any finite input.
      T max = valid > 0 ? x_row[0] : T(0);
      for (int64_t j = 1; j < valid; ++j) max = std::max(max, x_row[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < valid; ++j) {
        const T e = std::exp(x_row[j] - max);  // y may alias x: x_row[j] is read before y_row[j]
        y_row[j] = e;
        sum += static_cast<double>(e);
      }
      // sum >= 1 (the max contributes exp(0)), so the division is safe.
      const T inv = static_cast<T>(1.0 / sum);
      for (int64_t j = 0; j < valid; ++j) y_row[j] *= inv;
      for (int64_t j = valid; j < n; ++j) y_row[j] = T(0);
    }
  });
}

template <class T>
void masked_softmax_backward(const Context& ctx, int64_t rows, int64_t n, const T* y, const T* dy,
                             T* dx) {
  parallel_for(ctx, rows, grain_for(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* y_row = y + r * n;
      const T* dy_row = dy + r * n;
      T* dx_row = dx + r * n;
      // Masked entries (y == 0) are skipped, so whatever dy holds there cannot leak in.
      double dot = 0.0;
      for (int64_t j = 0; j < n; ++j)
        if (y_row[j] != T(0))
          dot += static_cast<double>(y_row[j]) * static_cast<double>(dy_row[j]);
      const T s = static_cast<T>(dot);
      for (int64_t j = 0; j < n; ++j)  // dx may alias dy: dot was complete before any write
        dx_row[j] = y_row[j] != T(0) ? y_row[j] * (dy_row[j] - s) : T(0);
    }
  });
}

// ---- Padding mask ---------------------------------------------------------------------------

template <class T>
void mask_positions(const Context&, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths, T* x,
                    int64_t ld) {
  constexpr const char* op = "mask_positions";
  detail::check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = lengths[b]; t < Tn; ++t) std::fill_n(x + (b * Tn + t) * ld, W, T(0));
}

#define LOCKSTEP_INSTANTIATE(T)                                                                  \
  template void masked_softmax_forward<T>(const Context&, int64_t, int64_t, int64_t,             \
                                          const int64_t*, const T*, T*);                         \
  template void masked_softmax_backward<T>(const Context&, int64_t, int64_t, const T*, const T*, \
                                           T*);                                                  \
  template void mask_positions<T>(const Context&, int64_t, int64_t, int64_t, const int64_t*, T*, \
                                  int64_t);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

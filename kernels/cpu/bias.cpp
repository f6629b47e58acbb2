// CPU reference for kernels/bias.h.

#include "kernels/bias.h"
#include "kernels/cpu/parallel.h"

#include <vector>

namespace lockstep::kernels::cpu {

template <class T>
void bias_add(const Context& ctx, int64_t rows, int64_t cols, const T* bias, T* y) {
  parallel_for(ctx, rows, grain_for(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
  });
}

template <class T>
void bias_grad(const Context& ctx, int64_t rows, int64_t cols, const T* dy, T* dbias) {
  if (rows <= 0 || cols <= 0) return;
  // Row-order accumulation in double within each fixed block of rows, the blocks added in order
  // (deterministic for any thread count), then one add into dbias.
  column_sums(
      ctx, rows, grain_for(cols), cols,
      [&](int64_t r0, int64_t r1, double* sum) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < cols; ++c) sum[c] += static_cast<double>(dy[r * cols + c]);
      },
      [&](int64_t c, double total) { dbias[c] += static_cast<T>(total); });
}

#define LOCKSTEP_INSTANTIATE(T)                                              \
  template void bias_add<T>(const Context&, int64_t, int64_t, const T*, T*); \
  template void bias_grad<T>(const Context&, int64_t, int64_t, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

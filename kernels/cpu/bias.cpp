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
  const int64_t grain = grain_for(cols), blocks = (rows + grain - 1) / grain;
  thread_local std::vector<double> partial_kept;  // kept between calls: no allocation per step
  auto& partial = partial_kept;  // references: a lambda naming a thread_local sees its own thread's
  partial.assign(static_cast<size_t>(blocks * cols), 0.0);
  parallel_for(ctx, rows, grain, [&](int64_t r0, int64_t r1) {
    double* sum = partial.data() + (r0 / grain) * cols;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) sum[c] += static_cast<double>(dy[r * cols + c]);
  });
  for (int64_t c = 0; c < cols; ++c) {
    double sum = 0.0;
    for (int64_t b = 0; b < blocks; ++b) sum += partial[b * cols + c];
    dbias[c] += static_cast<T>(sum);
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                              \
  template void bias_add<T>(const Context&, int64_t, int64_t, const T*, T*); \
  template void bias_grad<T>(const Context&, int64_t, int64_t, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

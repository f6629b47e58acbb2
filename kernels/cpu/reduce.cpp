// CPU reference for kernels/reduce.h.

#include "kernels/reduce.h"

namespace lockstep::kernels::cpu {

template <class T>
void sum(const Context&, int64_t n, const T* x, T* out) {
  // Sequential, in double: a fixed order (deterministic) and, for T = float, an oracle more
  // accurate than the data type.
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]);
  *out = static_cast<T>(total);
}

template <class T>
void sum_blocks(const Context&, int64_t n, int blocks, const T* x, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    T total = x[i];
    for (int b = 1; b < blocks; ++b) total = static_cast<T>(total + x[b * n + i]);
    out[i] = total;
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                \
  template void sum<T>(const Context&, int64_t, const T*, T*); \
  template void sum_blocks<T>(const Context&, int64_t, int, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

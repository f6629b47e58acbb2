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

#define LOCKSTEP_INSTANTIATE(T) template void sum<T>(const Context&, int64_t, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

#include "kernels/init.h"

#include <cmath>

#include "lockstep/core/philox.h"

namespace lockstep::kernels::cpu {

template <class T>
void fill_uniform(const Context&, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                  float lo, float hi, T* x) {
  const float range = hi - lo;
  for (int64_t i = 0; i < n; ++i) {
    const float u = uniform01_from_u32(philox_u32(seed, stream, offset + static_cast<uint64_t>(i)));
    x[i] = static_cast<T>(std::fmaf(range, u, lo));
  }
}

template <class T>
void fill_constant(const Context&, int64_t n, T value, T* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

#define LOCKSTEP_INSTANTIATE(T)                                                               \
  template void fill_uniform<T>(const Context&, int64_t, uint64_t, uint64_t, uint64_t, float, \
                                float, T*);                                                   \
  template void fill_constant<T>(const Context&, int64_t, T, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

// CPU reference for dropout (kernels/dropout.h). Sizes and p are validated by the dispatcher.
//
// The keep test compares the 24-bit uniform float with p in float, and the survivors are
// multiplied by the float 1 / (1 − p): the same operations as the CUDA kernel, so for T = float
// the two agree bitwise.

#include "kernels/dropout.h"

#include <cstring>

#include "lockstep/core/philox.h"

namespace lockstep::kernels::cpu {

namespace {
template <class T>
void apply_dropout(int64_t n, float p, uint64_t seed, uint64_t offset, const T* in, T* out) {
  if (p == 0.0f) {
    if (out != in && n > 0) std::memmove(out, in, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) {
    const float u =
        uniform01_from_u32(philox_u32(seed, kDropoutStream, offset + static_cast<uint64_t>(i)));
    // A select, not a multiply by a 0/1 mask: a non-finite dropped input gives 0, not NaN.
    out[i] = u >= p ? in[i] * static_cast<T>(scale) : T(0);
  }
}
}  // namespace

template <class T>
void dropout_forward(const Context&, int64_t n, float p, uint64_t seed, const uint64_t* base,
                     uint64_t offset, const T* x, T* y) {
  apply_dropout(n, p, seed, (base ? *base : 0) + offset, x, y);
}

template <class T>
void dropout_backward(const Context&, int64_t n, float p, uint64_t seed, const uint64_t* base,
                      uint64_t offset, const T* dy, T* dx) {
  apply_dropout(n, p, seed, (base ? *base : 0) + offset, dy, dx);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                \
  template void dropout_forward<T>(const Context&, int64_t, float, uint64_t, const uint64_t*,  \
                                   uint64_t, const T*, T*);                                    \
  template void dropout_backward<T>(const Context&, int64_t, float, uint64_t, const uint64_t*, \
                                    uint64_t, const T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

// CPU reference for kernels/loss.h.

#include "kernels/loss.h"

#include <algorithm>
#include <cmath>

namespace lockstep::kernels::cpu {

// loss = max(x, 0) - x * t + log1p(exp(-|x|)) is -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]
// rearranged so that exp never sees a positive argument: finite for any x, and for |x| > 30 the
// log1p term is below float resolution of the (then dominant) linear part, so the result is exact.
template <class T>
void bce_with_logits(const Context&, int64_t n, const T* logits, const T* labels, T grad_scale,
                     T* loss, T* dlogits) {
  for (int64_t i = 0; i < n; ++i) {
    const T x = logits[i], t = labels[i];
    const T e = std::exp(-std::abs(x));  // in (0, 1]
    if (loss) loss[i] = std::max(x, T(0)) - x * t + std::log1p(e);
    if (dlogits) {
      // sigmoid(x) from the same e: 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0.
      const T sig = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      dlogits[i] = grad_scale * (sig - t);
    }
  }
}

#define LOCKSTEP_INSTANTIATE(T) \
  template void bce_with_logits<T>(const Context&, int64_t, const T*, const T*, T, T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

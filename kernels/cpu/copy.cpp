#include "kernels/copy.h"
#include "kernels/cpu/parallel.h"

#include <cstring>

namespace lockstep::kernels::cpu {

template <class T>
void copy_2d(const Context& ctx, int64_t rows, int64_t cols, const T* src, int64_t ld_src, T* dst,
             int64_t ld_dst, bool accumulate) {
  parallel_for(ctx, rows, grain_for(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* s = src + r * ld_src;
      T* d = dst + r * ld_dst;
      if (accumulate) {
        for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
      } else {
        std::memcpy(d, s, static_cast<size_t>(cols) * sizeof(T));
      }
    }
  });
}

template <class T>
void scale(const Context&, int64_t n, T alpha, const T* x, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

template void scale<float>(const Context&, int64_t, float, const float*, float*);
template void scale<double>(const Context&, int64_t, double, const double*, double*);
template void copy_2d<float>(const Context&, int64_t, int64_t, const float*, int64_t, float*,
                             int64_t, bool);
template void copy_2d<double>(const Context&, int64_t, int64_t, const double*, int64_t, double*,
                              int64_t, bool);

}  // namespace lockstep::kernels::cpu

#pragma once
// PReLU over one row of `cols` values (kernels/activation.h), shared by prelu_forward /
// prelu_backward (kernels/cpu/activation.cpp) and the DIN unit's fused PReLU
// (kernels/cpu/din_unit.cpp), so that the fused kernels give the same bits by construction.
// Branch-free element-wise loops that vectorise (the CPU kernels are built with
// -fno-trapping-math, CMakeLists.txt).

#include <cstdint>

namespace lockstep::kernels::cpu {

/// y = x > 0 ? x : alpha · x. y may be x itself.
template <class T>
inline void prelu_forward_row(int64_t cols, const T* x, const T* alpha, T* y) {
  // Both sides computed, then selected: a vector blend, not a branch per element.
#pragma GCC ivdep
  for (int64_t c = 0; c < cols; ++c) {
    const T v = x[c], scaled = alpha[c] * v;
    y[c] = v > T(0) ? v : scaled;
  }
}

/// dalpha_sum[c] += (x > 0 ? 0 : dy · x) in double, then dx = x > 0 ? dy : alpha · dy. dx may be
/// dy itself (the terms are taken first). A positive x adds 0.0, which leaves a sum's bits as
/// they were (sums start at +0.0, and +0.0 + −0.0 = +0.0).
template <class T>
inline void prelu_backward_row(int64_t cols, const T* x, const T* alpha, const T* dy, T* dx,
                               double* dalpha_sum) {
  for (int64_t c = 0; c < cols; ++c) {
    const double term = static_cast<double>(dy[c]) * static_cast<double>(x[c]);
    dalpha_sum[c] += x[c] > T(0) ? 0.0 : term;
  }
#pragma GCC ivdep
  for (int64_t c = 0; c < cols; ++c) {
    const T g = dy[c], scaled = alpha[c] * g;
    dx[c] = x[c] > T(0) ? g : scaled;
  }
}

}  // namespace lockstep::kernels::cpu

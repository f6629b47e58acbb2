// CPU reference for the activations in kernels/activation.h. Plain loops, written to be read:
// this is the oracle the CUDA kernels are tested against and the path that runs without a GPU.
//
// Column reductions (PReLU/Dice dalpha, Dice batch statistics) accumulate in double in row
// order, so results are deterministic and, for T = float, more accurate than the data type.

#include "kernels/activation.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/prelu_rows.h"

#include <cmath>
#include <vector>

namespace lockstep::kernels::cpu {
namespace {

/// 1 / (1 + exp(-x)) without overflow: exp is only ever taken of a non-positive number.
template <class T>
T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

}  // namespace

// ---- ReLU ----------------------------------------------------------------------------------

template <class T>
void relu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  parallel_for(ctx, n, grain_for(1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
  });
}

template <class T>
void relu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  // The subgradient at x == 0 is taken as 0. A select (not dy * mask) so that a non-finite dy
  // on an inactive unit is not propagated.
  parallel_for(ctx, n, grain_for(1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = dy[i];  // loaded either way: the select vectorises (as in prelu_forward)
      dx[i] = x[i] > T(0) ? g : T(0);
    }
  });
}

// ---- LeakyReLU -----------------------------------------------------------------------------

template <class T>
void leaky_relu_forward(const Context& ctx, int64_t n, T slope, const T* x, T* y) {
  parallel_for(ctx, n, grain_for(1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T v = x[i], scaled = slope * v;
      y[i] = v > T(0) ? v : scaled;
    }
  });
}

template <class T>
void leaky_relu_backward(const Context& ctx, int64_t n, T slope, const T* x, const T* dy, T* dx) {
  parallel_for(ctx, n, grain_for(1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = dy[i], scaled = slope * g;
      dx[i] = x[i] > T(0) ? g : scaled;
    }
  });
}

// ---- Sigmoid -------------------------------------------------------------------------------

template <class T>
void sigmoid_forward(const Context&, int64_t n, const T* x, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = stable_sigmoid(x[i]);
}

template <class T>
void sigmoid_backward(const Context&, int64_t n, const T* y, const T* dy, T* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}

// ---- PReLU ---------------------------------------------------------------------------------

template <class T>
void prelu_forward(const Context& ctx, int64_t rows, int64_t cols, const T* x, const T* alpha,
                   T* y) {
  parallel_for(ctx, rows, grain_for(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) prelu_forward_row(cols, x + r * cols, alpha, y + r * cols);
  });
}

template <class T>
void prelu_backward(const Context& ctx, int64_t rows, int64_t cols, const T* x, const T* alpha,
                    const T* dy, T* dx, T* dalpha) {
  if (rows <= 0 || cols <= 0) return;
  // dalpha: double sums per column in fixed blocks of rows, added in block order.
  const auto add_block = [&](int64_t r0, int64_t r1, double* dalpha_sum) {
    for (int64_t r = r0; r < r1; ++r)
      prelu_backward_row(cols, x + r * cols, alpha, dy + r * cols, dx + r * cols, dalpha_sum);
  };
  column_sums(ctx, rows, grain_for(cols), cols, add_block,
              [&](int64_t c, double total) { dalpha[c] += static_cast<T>(total); });
}

// ---- Dice ----------------------------------------------------------------------------------
//
// With s = 1 / sqrt(var + eps), xhat = (x - mean) * s and p = sigmoid(xhat):
//   y = p * x + (1 - p) * alpha * x = x * (alpha + p * (1 - alpha)).

template <class T>
void dice_forward_train(const Context&, int64_t rows, int64_t cols, T eps, const T* x,
                        const T* alpha, T* y, T* mean, T* var, T* p) {
  if (rows <= 0 || cols <= 0) return;
  const auto ucols = static_cast<size_t>(cols);
  // Two passes (mean, then squared deviations): no cancellation as in E[x^2] - E[x]^2.
  LOCKSTEP_KEPT_VECTOR(double, sum);
  LOCKSTEP_KEPT_VECTOR(double, sq_dev);
  sum.assign(ucols, 0.0);
  sq_dev.assign(ucols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) sum[c] += static_cast<double>(x[r * cols + c]);
  for (int64_t c = 0; c < cols; ++c) mean[c] = static_cast<T>(sum[c] / static_cast<double>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double d = static_cast<double>(x[r * cols + c]) - static_cast<double>(mean[c]);
      sq_dev[c] += d * d;
    }
  }
  LOCKSTEP_KEPT_VECTOR(T, inv_std);
  inv_std.resize(ucols);
  for (int64_t c = 0; c < cols; ++c) {
    var[c] = static_cast<T>(sq_dev[c] / static_cast<double>(rows));
    inv_std[c] = T(1) / std::sqrt(var[c] + eps);
  }

  // The elementwise part uses the stored (type T) mean and var, exactly as dice_backward will.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const T pi = stable_sigmoid((x[i] - mean[c]) * inv_std[c]);
      p[i] = pi;
      y[i] = x[i] * (alpha[c] + pi * (T(1) - alpha[c]));
    }
  }
}

template <class T>
void dice_forward_infer(const Context&, int64_t rows, int64_t cols, T eps, const T* x,
                        const T* alpha, const T* running_mean, const T* running_var, T* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const T s = T(1) / std::sqrt(running_var[c] + eps);
      const T pi = stable_sigmoid((x[i] - running_mean[c]) * s);
      y[i] = x[i] * (alpha[c] + pi * (T(1) - alpha[c]));
    }
  }
}

template <class T>
void dice_update_running(const Context&, int64_t rows, int64_t cols, T momentum, const T* mean,
                         const T* var, T* running_mean, T* running_var) {
  if (rows <= 0) return;  // an empty batch has no statistics (dice_forward_train wrote none)
  // Unbiased variance; with one row there is no unbiased estimate and the biased one (0) is used.
  const T unbias = rows > 1 ? static_cast<T>(rows) / static_cast<T>(rows - 1) : T(1);
  for (int64_t c = 0; c < cols; ++c) {
    running_mean[c] = momentum * running_mean[c] + (T(1) - momentum) * mean[c];
    running_var[c] = momentum * running_var[c] + (T(1) - momentum) * (var[c] * unbias);
  }
}

// Backward in training mode. With g = dL/dxhat = dy * x * (1 - alpha) * p * (1 - p), the
// gradient through the batch statistics is the batch-norm backward
//   dx = dy * (alpha + p * (1 - alpha))                      (p held fixed)
//      + s * (g - mean_rows(g) - xhat * mean_rows(g * xhat))  (through p, mean and var)
// and dalpha[c] += sum_rows dy * x * (1 - p).
template <class T>
void dice_backward(const Context&, int64_t rows, int64_t cols, T eps, const T* x, const T* alpha,
                   const T* mean, const T* var, const T* p, const T* dy, T* dx, T* dalpha) {
  if (rows <= 0 || cols <= 0) return;
  const auto ucols = static_cast<size_t>(cols);
  LOCKSTEP_KEPT_VECTOR(double, sum_g);
  LOCKSTEP_KEPT_VECTOR(double, sum_g_xhat);
  LOCKSTEP_KEPT_VECTOR(double, sum_dalpha);
  sum_g.assign(ucols, 0.0);
  sum_g_xhat.assign(ucols, 0.0);
  sum_dalpha.assign(ucols, 0.0);
  LOCKSTEP_KEPT_VECTOR(T, inv_std);
  LOCKSTEP_KEPT_VECTOR(T, mean_g);
  LOCKSTEP_KEPT_VECTOR(T, mean_g_xhat);
  inv_std.resize(ucols);
  mean_g.resize(ucols);
  mean_g_xhat.resize(ucols);
  for (int64_t c = 0; c < cols; ++c) inv_std[c] = T(1) / std::sqrt(var[c] + eps);
  // Pass 1: per-column sums. Reads everything it needs from dy before pass 2 overwrites it
  // (dx may alias dy).
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const T xhat = (x[i] - mean[c]) * inv_std[c];
      const T g = dy[i] * x[i] * (T(1) - alpha[c]) * p[i] * (T(1) - p[i]);
      sum_g[c] += static_cast<double>(g);
      sum_g_xhat[c] += static_cast<double>(g) * static_cast<double>(xhat);
      sum_dalpha[c] += static_cast<double>(dy[i] * x[i] * (T(1) - p[i]));
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    mean_g[c] = static_cast<T>(sum_g[c] / static_cast<double>(rows));
    mean_g_xhat[c] = static_cast<T>(sum_g_xhat[c] / static_cast<double>(rows));
  }
  // Pass 2: dx.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const T s = inv_std[c];
      const T xhat = (x[i] - mean[c]) * s;
      const T d = dy[i];
      const T g = d * x[i] * (T(1) - alpha[c]) * p[i] * (T(1) - p[i]);
      dx[i] =
          d * (alpha[c] + p[i] * (T(1) - alpha[c])) + s * (g - mean_g[c] - xhat * mean_g_xhat[c]);
    }
  }
  for (int64_t c = 0; c < cols; ++c) dalpha[c] += static_cast<T>(sum_dalpha[c]);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                    \
  template void relu_forward<T>(const Context&, int64_t, const T*, T*);                            \
  template void relu_backward<T>(const Context&, int64_t, const T*, const T*, T*);                 \
  template void leaky_relu_forward<T>(const Context&, int64_t, T, const T*, T*);                   \
  template void leaky_relu_backward<T>(const Context&, int64_t, T, const T*, const T*, T*);        \
  template void sigmoid_forward<T>(const Context&, int64_t, const T*, T*);                         \
  template void sigmoid_backward<T>(const Context&, int64_t, const T*, const T*, T*);              \
  template void prelu_forward<T>(const Context&, int64_t, int64_t, const T*, const T*, T*);        \
  template void prelu_backward<T>(const Context&, int64_t, int64_t, const T*, const T*, const T*,  \
                                  T*, T*);                                                         \
  template void dice_forward_train<T>(const Context&, int64_t, int64_t, T, const T*, const T*, T*, \
                                      T*, T*, T*);                                                 \
  template void dice_forward_infer<T>(const Context&, int64_t, int64_t, T, const T*, const T*,     \
                                      const T*, const T*, T*);                                     \
  template void dice_update_running<T>(const Context&, int64_t, int64_t, T, const T*, const T*,    \
                                       T*, T*);                                                    \
  template void dice_backward<T>(const Context&, int64_t, int64_t, T, const T*, const T*,          \
                                 const T*, const T*, const T*, const T*, T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

#pragma once
// Activations, forward and backward: ReLU, LeakyReLU, sigmoid, PReLU (learned per-channel
// slope) and Dice (Zhou et al., DIN, 2018).
//
// x, y, dy, dx: (rows, cols) row-major, n = rows * cols elements. dx may alias dy.
// Parameter gradients (dalpha) ACCUMULATE into their buffer; activation gradients (dx)
// OVERWRITE. Column reductions use a fixed order (deterministic, no float atomics).

#include "kernels/common.h"

namespace lockstep::kernels {

// ---- ReLU: y = max(x, 0); dx = dy * (x > 0).
LOCKSTEP_KERNEL_IMPLS(relu_forward, const Context& ctx, int64_t n, const T* x, T* y)
LOCKSTEP_KERNEL_IMPLS(relu_backward, const Context& ctx, int64_t n, const T* x, const T* dy, T* dx)
template <class T>
void relu_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, relu_forward, n, x, y);
}
template <class T>
void relu_backward(const Context& ctx, int64_t n, const T* x, const T* dy, T* dx) {
  LOCKSTEP_DISPATCH(T, ctx, relu_backward, n, x, dy, dx);
}

// ---- LeakyReLU with a fixed slope: y = x > 0 ? x : slope * x.
LOCKSTEP_KERNEL_IMPLS(leaky_relu_forward, const Context& ctx, int64_t n, T slope, const T* x, T* y)
LOCKSTEP_KERNEL_IMPLS(leaky_relu_backward, const Context& ctx, int64_t n, T slope, const T* x,
                      const T* dy, T* dx)
template <class T>
void leaky_relu_forward(const Context& ctx, int64_t n, T slope, const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, leaky_relu_forward, n, slope, x, y);
}
template <class T>
void leaky_relu_backward(const Context& ctx, int64_t n, T slope, const T* x, const T* dy, T* dx) {
  LOCKSTEP_DISPATCH(T, ctx, leaky_relu_backward, n, slope, x, dy, dx);
}

// ---- Sigmoid: y = 1 / (1 + exp(-x)), computed without overflow for any x.
// Backward uses the forward OUTPUT: dx = dy * y * (1 - y).
LOCKSTEP_KERNEL_IMPLS(sigmoid_forward, const Context& ctx, int64_t n, const T* x, T* y)
LOCKSTEP_KERNEL_IMPLS(sigmoid_backward, const Context& ctx, int64_t n, const T* y, const T* dy,
                      T* dx)
template <class T>
void sigmoid_forward(const Context& ctx, int64_t n, const T* x, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, sigmoid_forward, n, x, y);
}
template <class T>
void sigmoid_backward(const Context& ctx, int64_t n, const T* y, const T* dy, T* dx) {
  LOCKSTEP_DISPATCH(T, ctx, sigmoid_backward, n, y, dy, dx);
}

// ---- PReLU with one learned slope per column: y = x > 0 ? x : alpha[c] * x.
// alpha: (cols). Backward: dx = dy * (x > 0 ? 1 : alpha[c]);
// dalpha[c] += sum over rows of dy * (x > 0 ? 0 : x).
LOCKSTEP_KERNEL_IMPLS(prelu_forward, const Context& ctx, int64_t rows, int64_t cols, const T* x,
                      const T* alpha, T* y)
LOCKSTEP_KERNEL_IMPLS(prelu_backward, const Context& ctx, int64_t rows, int64_t cols, const T* x,
                      const T* alpha, const T* dy, T* dx, T* dalpha)
template <class T>
void prelu_forward(const Context& ctx, int64_t rows, int64_t cols, const T* x, const T* alpha,
                   T* y) {
  LOCKSTEP_DISPATCH(T, ctx, prelu_forward, rows, cols, x, alpha, y);
}
template <class T>
void prelu_backward(const Context& ctx, int64_t rows, int64_t cols, const T* x, const T* alpha,
                    const T* dy, T* dx, T* dalpha) {
  LOCKSTEP_DISPATCH(T, ctx, prelu_backward, rows, cols, x, alpha, dy, dx, dalpha);
}

// ---- Dice (DIN paper, eq. 7): per column c,
//   p = sigmoid((x - E[x]) / sqrt(Var[x] + eps)),   y = p * x + (1 - p) * alpha[c] * x.
// Training: E and Var are the batch mean and biased variance of the column (as in batch norm
// without affine terms); the backward pass differentiates through them. Inference: the running
// averages are used instead and are treated as constants.
//
// dice_forward_train writes mean (cols), var (cols, biased) and p (rows, cols) for backward.
// rows == 0 is a no-op. dice_update_running: running = momentum * running + (1 - momentum) *
// batch, with the unbiased variance var * rows / (rows - 1) (biased when rows == 1).
LOCKSTEP_KERNEL_IMPLS(dice_forward_train, const Context& ctx, int64_t rows, int64_t cols, T eps,
                      const T* x, const T* alpha, T* y, T* mean, T* var, T* p)
LOCKSTEP_KERNEL_IMPLS(dice_forward_infer, const Context& ctx, int64_t rows, int64_t cols, T eps,
                      const T* x, const T* alpha, const T* running_mean, const T* running_var, T* y)
LOCKSTEP_KERNEL_IMPLS(dice_update_running, const Context& ctx, int64_t rows, int64_t cols,
                      T momentum, const T* mean, const T* var, T* running_mean, T* running_var)
LOCKSTEP_KERNEL_IMPLS(dice_backward, const Context& ctx, int64_t rows, int64_t cols, T eps,
                      const T* x, const T* alpha, const T* mean, const T* var, const T* p,
                      const T* dy, T* dx, T* dalpha)
template <class T>
void dice_forward_train(const Context& ctx, int64_t rows, int64_t cols, T eps, const T* x,
                        const T* alpha, T* y, T* mean, T* var, T* p) {
  LOCKSTEP_DISPATCH(T, ctx, dice_forward_train, rows, cols, eps, x, alpha, y, mean, var, p);
}
template <class T>
void dice_forward_infer(const Context& ctx, int64_t rows, int64_t cols, T eps, const T* x,
                        const T* alpha, const T* running_mean, const T* running_var, T* y) {
  LOCKSTEP_DISPATCH(T, ctx, dice_forward_infer, rows, cols, eps, x, alpha, running_mean,
                    running_var, y);
}
template <class T>
void dice_update_running(const Context& ctx, int64_t rows, int64_t cols, T momentum, const T* mean,
                         const T* var, T* running_mean, T* running_var) {
  LOCKSTEP_DISPATCH(T, ctx, dice_update_running, rows, cols, momentum, mean, var, running_mean,
                    running_var);
}
template <class T>
void dice_backward(const Context& ctx, int64_t rows, int64_t cols, T eps, const T* x,
                   const T* alpha, const T* mean, const T* var, const T* p, const T* dy, T* dx,
                   T* dalpha) {
  LOCKSTEP_DISPATCH(T, ctx, dice_backward, rows, cols, eps, x, alpha, mean, var, p, dy, dx, dalpha);
}

}  // namespace lockstep::kernels

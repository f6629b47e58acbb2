#pragma once
// Binary cross-entropy with logits.

#include "kernels/common.h"

namespace lockstep::kernels {

// For each sample i (n samples): with x = logits[i], t = labels[i] in [0, 1],
//   loss[i]  = max(x, 0) - x * t + log1p(exp(-|x|))      (finite for any |x|, exact for |x| > 30)
//   dlogits[i] = grad_scale * (sigmoid(x) - t)
// loss or dlogits may be nullptr to skip that output. The summed loss is sum(ctx, n, loss, out)
// (kernels/reduce.h); losses are SUMS over samples so that an empty batch contributes exactly 0.
LOCKSTEP_KERNEL_IMPLS(bce_with_logits, const Context& ctx, int64_t n, const T* logits,
                      const T* labels, T grad_scale, T* loss, T* dlogits)
template <class T>
void bce_with_logits(const Context& ctx, int64_t n, const T* logits, const T* labels, T grad_scale,
                     T* loss, T* dlogits) {
  LOCKSTEP_DISPATCH(T, ctx, bce_with_logits, n, logits, labels, grad_scale, loss, dlogits);
}

}  // namespace lockstep::kernels

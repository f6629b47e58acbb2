#include "lockstep/nn/loss.h"

#include "kernels/loss.h"
#include "kernels/reduce.h"

namespace lockstep::nn {

template <class T>
void BceWithLogits<T>::forward_backward(const Context& ctx, int64_t rows, const T* logits,
                                        const T* labels, T grad_scale, T* dlogits, T* loss_sum) {
  per_sample_.resize(ctx, {std::max<int64_t>(rows, 1)});
  kernels::bce_with_logits<T>(ctx, rows, logits, labels, grad_scale, per_sample_.data(), dlogits);
  kernels::sum<T>(ctx, rows, per_sample_.data(), loss_sum);
}

template class BceWithLogits<float>;
template class BceWithLogits<double>;

}  // namespace lockstep::nn

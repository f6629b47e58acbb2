#include "train/state_sync.h"

#include "kernels/copy.h"

namespace lockstep::train {

StateSync::StateSync(const Context& ctx, nn::ParamSet<float>& params, int ranks)
    : params_(params),
      begin_(params.trainable_size()),
      size_(params.size() - params.trainable_size()) {
  active_ = ranks > 1 && size_ > 0;
  if (active_) before_.resize(ctx, {size_});
}

void StateSync::snapshot(const Context& ctx) {
  if (!active_) return;
  copy_bytes(ctx, before_.data(), ctx.device(), params_.values() + begin_, ctx.device(),
             before_.bytes());
}

void StateSync::encode_delta(const Context& ctx, int64_t n_samples) {
  if (!active_) return;
  float* delta = params_.grads() + begin_;
  kernels::scale<float>(ctx, size_, -1.0f, before_.data(), delta);
  kernels::copy_2d<float>(ctx, 1, size_, params_.values() + begin_, size_, delta, size_,
                          /*accumulate=*/true);
  kernels::scale<float>(ctx, size_, static_cast<float>(n_samples), delta, delta);
}

void StateSync::apply(const Context& ctx, float inv_samples) {
  if (!active_) return;
  float* delta = params_.grads() + begin_;
  kernels::scale<float>(ctx, size_, inv_samples, delta, delta);
  copy_bytes(ctx, params_.values() + begin_, ctx.device(), before_.data(), ctx.device(),
             before_.bytes());
  kernels::copy_2d<float>(ctx, 1, size_, delta, size_, params_.values() + begin_, size_,
                          /*accumulate=*/true);
}

}  // namespace lockstep::train

#include "lockstep/train/local_trainer.h"

#include <cmath>

namespace lockstep::train {

template <class T>
LocalTrainer<T>::LocalTrainer(models::Model<T>& model, const Context& ctx)
    : model_(&model), ctx_(&ctx) {
  loss_sum_.resize(ctx, {1});
}

template <class T>
double LocalTrainer<T>::step(const data::Batch& batch) {
  if (batch.size == 0) return 0.0;
  const double loss = compute_gradients(batch);
  model_->apply_gradients(*ctx_, T(1) / static_cast<T>(batch.size));
  ++steps_;
  return loss;
}

template <class T>
double LocalTrainer<T>::compute_gradients(const data::Batch& batch) {
  LOCKSTEP_CHECK(batch.size > 0, "compute_gradients needs a non-empty batch");
  LOCKSTEP_CHECK(static_cast<int64_t>(batch.labels.size()) == batch.size,
                 "batch has {} labels for {} samples", batch.labels.size(), batch.size);
  const Context& ctx = *ctx_;
  model_->zero_grad(ctx);
  const T* logits = model_->forward(ctx, batch, /*training=*/true);
  upload(ctx, std::vector<T>(batch.labels.begin(), batch.labels.end()), labels_);
  if (model_->has_custom_loss()) return model_->loss_and_backward(ctx, labels_.data());
  dlogits_.resize(ctx, {batch.size});
  loss_.forward_backward(ctx, batch.size, logits, labels_.data(), T(1), dlogits_.data(),
                         loss_sum_.data());
  model_->backward(ctx, dlogits_.data());
  return static_cast<double>(to_host(ctx, loss_sum_.data(), 1)[0]);
}

template <class T>
std::vector<float> LocalTrainer<T>::predict(const data::Batch& batch) {
  if (batch.size == 0) return {};
  const T* logits = model_->forward(*ctx_, batch, /*training=*/false);
  const std::vector<T> z = to_host(*ctx_, logits, batch.size);
  std::vector<float> p(z.size());
  for (size_t i = 0; i < z.size(); ++i)
    p[i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(z[i]))));
  return p;
}

template class LocalTrainer<float>;
template class LocalTrainer<double>;

}  // namespace lockstep::train

#include "lockstep/train/local_trainer.h"

#include <cmath>

#include "lockstep/core/profile.h"
#include "train/step_graphs.h"

namespace lockstep::train {

template <class T>
LocalTrainer<T>::LocalTrainer(models::Model<T>& model, const Context& ctx)
    : model_(&model), ctx_(&ctx) {
  loss_sum_.resize(ctx, {1});
  if constexpr (std::is_same_v<T, float>) set_graphs(ctx.is_cuda() && ctx.options().cuda_graphs);
}

template <class T>
LocalTrainer<T>::~LocalTrainer() = default;

template <class T>
void LocalTrainer<T>::set_graphs(bool on) {
  if (on == graphs()) return;
  graphs_ = on ? std::make_unique<StepGraphs>(*ctx_) : nullptr;
  batch_.set_pad_ids(on);
}

template <class T>
GraphStats LocalTrainer<T>::graph_stats() const {
  return graphs_ ? graphs_->stats() : GraphStats{};
}

template <class T>
models::DeviceBatch<T>& LocalTrainer<T>::stage(const data::Batch& batch) {
  const ProfilePhase phase(*ctx_, "stage (batch to device)");
  model_->stage(*ctx_, batch, batch_);
  return batch_;
}

template <class T>
const T* LocalTrainer<T>::compute_gradients(const models::DeviceBatch<T>& batch) {
  LOCKSTEP_CHECK(batch.size() > 0, "compute_gradients needs a non-empty batch");
  LOCKSTEP_CHECK(batch.num_labels() == batch.size(), "batch has {} labels for {} samples",
                 batch.num_labels(), batch.size());
  const Context& ctx = *ctx_;
  const auto region = [&]() -> const void* {
    {
      const ProfilePhase phase(ctx, "forward");
      model_->zero_grad(ctx);
      model_->forward(ctx, batch, /*training=*/true);
    }
    const ProfilePhase phase(ctx, "loss + backward");
    model_->loss_and_backward(ctx, batch, loss_sum_.data());
    return loss_sum_.data();
  };
  if (!graphs_) return static_cast<const T*>(region());
  // What shapes the launches: where the batch is staged and its sizes. The graph's host pass
  // checks that nothing else changed (StepGraphs).
  key_.assign({reinterpret_cast<intptr_t>(&batch), batch.size(), batch.num_labels(),
               batch.dense_values(), static_cast<int64_t>(batch.num_tables())});
  for (size_t t = 0; t < batch.num_tables(); ++t) {
    key_.push_back(batch.bags(t));
    key_.push_back(batch.staged_nnz(t));
    key_.push_back(batch.padded(t) ? 1 : 0);
  }
  return static_cast<const T*>(graphs_->run(key_, region));
}

template <class T>
double LocalTrainer<T>::step(const data::Batch& batch) {
  if (batch.size == 0) return 0.0;
  const T* loss = compute_gradients(stage(batch));
  {
    const ProfilePhase phase(*ctx_, "optimizer");
    model_->apply_gradients(*ctx_, T(1) / static_cast<T>(batch.size));
  }
  ++steps_;
  T value = T(0);  // the step's one read
  to_host(*ctx_, loss, 1, &value);
  return static_cast<double>(value);
}

template <class T>
std::vector<float> LocalTrainer<T>::predict(const data::Batch& batch) {
  if (batch.size == 0) return {};
  const T* logits = model_->forward(*ctx_, stage(batch), /*training=*/false);
  const std::vector<T> z = to_host(*ctx_, logits, batch.size);
  std::vector<float> p(z.size());
  for (size_t i = 0; i < z.size(); ++i)
    p[i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(z[i]))));
  return p;
}

template <class T>
std::vector<std::vector<float>> LocalTrainer<T>::predict_outputs(const data::Batch& batch) {
  const size_t n = model_->output_names().size();
  std::vector<std::vector<float>> out(n);
  if (batch.size == 0) return out;
  model_->forward(*ctx_, stage(batch), /*training=*/false);
  for (size_t o = 0; o < n; ++o) {
    const std::vector<T> z = to_host(*ctx_, model_->output_logits(o), batch.size);
    out[o].resize(z.size());
    for (size_t i = 0; i < z.size(); ++i)
      out[o][i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(z[i]))));
  }
  return out;
}

template class LocalTrainer<float>;
template class LocalTrainer<double>;

}  // namespace lockstep::train

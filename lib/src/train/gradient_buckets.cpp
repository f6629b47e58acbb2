#include "train/gradient_buckets.h"

#include <algorithm>

#include "lockstep/core/tensor.h"

namespace lockstep::train {

GradientBuckets::GradientBuckets(nn::ParamSet<float>& params, comm::Communicator& comm,
                                 int64_t bucket_bytes)
    : params_(params), comm_(comm) {
  LOCKSTEP_ASSERT(params.allocated());
  const auto& entries = params.entries();
  bucket_of_.assign(entries.size(), -1);
  writes_.assign(entries.size(), 0);
  expected_.assign(entries.size(), 0);
  if (bucket_bytes <= 0 || params.trainable_size() == 0) return;
  std::vector<int> order;  // trainable parameters, last in the buffer first
  for (size_t h = 0; h < entries.size(); ++h)
    if (entries[h].trainable) order.push_back(static_cast<int>(h));
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return entries[a].offset > entries[b].offset; });
  const int64_t elems = std::max<int64_t>(bucket_bytes / static_cast<int64_t>(sizeof(float)), 1);
  Bucket cur;
  cur.end = params.trainable_size();
  for (const int h : order) {
    cur.handles.push_back(h);
    cur.begin = entries[h].offset;
    if (cur.end - cur.begin >= elems) {
      const int64_t begin = cur.begin;
      buckets_.push_back(std::move(cur));
      cur = Bucket{};
      cur.end = begin;
    }
  }
  if (!cur.handles.empty()) buckets_.push_back(std::move(cur));
  buckets_.back().begin = 0;  // the first parameter's padding too: the buckets tile the region
  for (size_t b = 0; b < buckets_.size(); ++b)
    for (const int h : buckets_[b].handles) bucket_of_[h] = static_cast<int>(b);
  waiting_.assign(buckets_.size(), 0);
  params_.set_grad_listener(this);
}

GradientBuckets::~GradientBuckets() {
  if (!buckets_.empty()) params_.set_grad_listener(nullptr);
}

void GradientBuckets::begin_step() {
  if (buckets_.empty()) return;
  std::fill(writes_.begin(), writes_.end(), 0);
  // A handle counts down when it reaches its expected writes; one the first backward never
  // wrote (expected 0) never does, so it holds its bucket until flush().
  for (size_t b = 0; b < buckets_.size(); ++b)
    waiting_[b] = static_cast<int>(buckets_[b].handles.size());
  next_ = 0;
  started_early_ = 0;
  listening_ = true;
}

void GradientBuckets::grad_written(const Context& ctx, int handle) {
  if (!listening_) return;
  const int b = bucket_of_.at(static_cast<size_t>(handle));
  if (b < 0) return;
  const int writes = ++writes_[handle];
  if (!learned_) return;
  LOCKSTEP_CHECK(static_cast<size_t>(b) >= next_,
                 "the backward wrote the gradient of '{}' again after its bucket's all-reduce "
                 "had started (write {} in this step; the first backward wrote it {} time(s)): "
                 "this model's backward is not the same every step; set all_reduce_bucket_mb = "
                 "0 (one all-reduce after the backward)",
                 params_.entry(handle).name, writes, expected_[handle]);
  if (writes == expected_[handle] && --waiting_[b] == 0) start_ready(ctx);
}

void GradientBuckets::start_ready(const Context& ctx) {
  while (next_ < buckets_.size() && waiting_[next_] == 0) {
    start(ctx);
    ++started_early_;
  }
}

void GradientBuckets::start(const Context& ctx) {
  const Bucket& bucket = buckets_[next_++];
  comm_.all_reduce_sum_start(ctx, params_.grads() + bucket.begin, bucket.end - bucket.begin,
                             comm::DataType::F32);
}

void GradientBuckets::flush(const Context& ctx, bool backward_completed) {
  if (buckets_.empty()) return;
  listening_ = false;
  if (backward_completed && !learned_) {
    expected_ = writes_;
    learned_ = true;
  }
  while (next_ < buckets_.size()) start(ctx);
}

void GradientBuckets::wait(const Context& ctx) {
  if (!buckets_.empty()) comm_.all_reduce_wait(ctx);
}

void GradientBuckets::zero_unstarted(const Context& ctx) {
  // Started buckets are [0, next_): they cover [buckets_[next_ - 1].begin, covered()).
  const int64_t keep_begin = next_ > 0 ? buckets_[next_ - 1].begin : covered();
  const int64_t keep_end = covered();
  zero_bytes(ctx, params_.grads(), static_cast<size_t>(keep_begin) * sizeof(float));
  zero_bytes(ctx, params_.grads() + keep_end,
             static_cast<size_t>(params_.size() - keep_end) * sizeof(float));
}

}  // namespace lockstep::train

#include "lockstep/train/batch_source.h"

#include "lockstep/core/error.h"

namespace lockstep::train {

void BatchSource::skip(int64_t batches) {
  data::Batch scratch;
  for (int64_t i = 0; i < batches && next(scratch); ++i) {
  }
}

bool VectorBatchSource::next(data::Batch& out) {
  if (pos_ >= batches_.size()) return false;
  out = batches_[pos_++];
  return true;
}

SyntheticBatchSource::SyntheticBatchSource(std::shared_ptr<const data::SyntheticGenerator> generator,
                                           int64_t first_sample, int64_t samples,
                                           int64_t batch_size, int rank, int ranks)
    : generator_(std::move(generator)),
      first_(first_sample),
      samples_(samples),
      batch_size_(batch_size),
      rank_(rank),
      ranks_(ranks),
      next_batch_(rank) {
  LOCKSTEP_CHECK(batch_size > 0, "batch size = {} must be >= 1", batch_size);
  LOCKSTEP_CHECK(samples >= 0 && first_sample >= 0, "negative sample range");
  LOCKSTEP_CHECK(rank >= 0 && rank < ranks, "rank {} outside [0, {})", rank, ranks);
}

bool SyntheticBatchSource::next(data::Batch& out) {
  const int64_t begin = next_batch_ * batch_size_;
  if (begin >= samples_) return false;
  out = generator_->generate(first_ + begin, std::min(batch_size_, samples_ - begin));
  next_batch_ += ranks_;
  return true;
}

}  // namespace lockstep::train

#include "lockstep/train/batch_source.h"

#include "lockstep/core/error.h"
#include "lockstep/data/text_format.h"

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

struct TextBatchSource::State {
  size_t file = 0;
  std::unique_ptr<data::TextReader> reader;
};

TextBatchSource::TextBatchSource(std::vector<std::string> files, data::Schema schema,
                                 int64_t batch_size, int rank, int ranks,
                                 std::vector<uint64_t> first_sample_ids)
    : files_(std::move(files)),
      first_ids_(std::move(first_sample_ids)),
      schema_(std::move(schema)),
      batch_size_(batch_size),
      rank_(rank),
      ranks_(ranks),
      state_(std::make_unique<State>()) {
  LOCKSTEP_CHECK(batch_size > 0, "batch size = {} must be >= 1", batch_size);
  LOCKSTEP_CHECK(first_ids_.empty() || first_ids_.size() == files_.size(),
                 "{} first sample ids for {} files", first_ids_.size(), files_.size());
}

TextBatchSource::~TextBatchSource() = default;

void TextBatchSource::start_epoch(int64_t) {
  state_ = std::make_unique<State>();
}

bool TextBatchSource::next(data::Batch& out) {
  // A batch never spans two files: the last batch of each file may be partial.
  while (state_->file < files_.size()) {
    if (!state_->reader)
      state_->reader = std::make_unique<data::TextReader>(
          files_[state_->file], schema_, rank_, ranks_,
          first_ids_.empty() ? 0 : first_ids_[state_->file]);
    if (state_->reader->next(out, batch_size_)) return true;
    state_->reader.reset();
    ++state_->file;
  }
  return false;
}

}  // namespace lockstep::train

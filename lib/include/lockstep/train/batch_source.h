#pragma once
// Per-rank data for the lockstep trainer: each rank reads its own shard, batch by batch.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/data/schema.h"
#include "lockstep/data/synthetic.h"

namespace lockstep::train {

/// One rank's stream of batches for each epoch. Shards may hold different numbers of batches
/// (even none): the trainer keeps every rank stepping until all are exhausted.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Rewinds to the first batch of `epoch` (0-based).
  virtual void start_epoch(int64_t epoch) = 0;
  /// The next batch of the current epoch, or false when the shard is exhausted.
  virtual bool next(data::Batch& out) = 0;
  /// Skips `batches` batches of the current epoch (resuming from a checkpoint).
  virtual void skip(int64_t batches);
};

/// A fixed list of batches, the same every epoch (tests, small in-memory data).
class VectorBatchSource final : public BatchSource {
 public:
  explicit VectorBatchSource(std::vector<data::Batch> batches) : batches_(std::move(batches)) {}
  void start_epoch(int64_t) override { pos_ = 0; }
  bool next(data::Batch& out) override;
  void skip(int64_t batches) override { pos_ += static_cast<size_t>(batches); }

 private:
  std::vector<data::Batch> batches_;
  size_t pos_ = 0;
};

/// Samples [0, samples) of a synthetic generator cut into global batches of `batch_size`;
/// rank r of P takes global batches r, r + P, r + 2P, … (so a step's batches, one per rank, are
/// consecutive global batches; the last ones may be partial or missing). The same samples every
/// epoch. skip() is O(1).
class SyntheticBatchSource final : public BatchSource {
 public:
  SyntheticBatchSource(std::shared_ptr<const data::SyntheticGenerator> generator, int64_t first_sample,
                       int64_t samples, int64_t batch_size, int rank, int ranks);
  void start_epoch(int64_t) override { next_batch_ = rank_; }
  bool next(data::Batch& out) override;
  void skip(int64_t batches) override { next_batch_ += batches * ranks_; }

 private:
  std::shared_ptr<const data::SyntheticGenerator> generator_;
  int64_t first_, samples_, batch_size_;
  int rank_, ranks_;
  int64_t next_batch_ = 0;
};

/// Tab-separated files (docs/data.md) read in order; rank r of P keeps the records whose index
/// within each file is ≡ r (mod P) and groups them into batches of `batch_size` (a batch never
/// spans two files). Sample ids are first_sample_ids[f] + record index in file f (0 when not
/// given), e.g. the "first_sample" of each file in a lockstep-datagen meta.json.
class TextBatchSource final : public BatchSource {
 public:
  TextBatchSource(std::vector<std::string> files, data::Schema schema, int64_t batch_size, int rank,
                  int ranks, std::vector<uint64_t> first_sample_ids = {});
  ~TextBatchSource() override;
  void start_epoch(int64_t epoch) override;
  bool next(data::Batch& out) override;

 private:
  struct State;
  std::vector<std::string> files_;
  std::vector<uint64_t> first_ids_;
  data::Schema schema_;
  int64_t batch_size_;
  int rank_, ranks_;
  std::unique_ptr<State> state_;
};

}  // namespace lockstep::train

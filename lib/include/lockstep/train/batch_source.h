#pragma once
// Per-rank data for the lockstep trainer: each rank reads its own shard, batch by batch.

#include <cstdint>
#include <map>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/data/cache.h"
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
  /// What went wrong with the data in the current epoch on this rank that did not stop it (e.g.
  /// skipped bad records), as text for the epoch report; empty when nothing did.
  virtual std::string epoch_report() const { return {}; }
  /// Records of one epoch over every rank's share (for the ETA of progress lines), or -1 while
  /// unknown: a cache's header, a synthetic range, text files counted in the background.
  virtual int64_t total_records() const { return -1; }
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
  int64_t total_records() const override { return samples_; }

 private:
  std::shared_ptr<const data::SyntheticGenerator> generator_;
  int64_t first_, samples_, batch_size_;
  int rank_, ranks_;
  int64_t next_batch_ = 0;
};

/// What a file source does with a record that does not parse.
enum class BadRecordPolicy {
  kFail,  ///< stop: the error names the file, the line, the column and the token
  kSkip,  ///< drop it, count it per reason (with file:line examples), and go on
};

struct FileSourceOptions {
  int64_t batch_size = 1024;
  /// This rank's share of the files. Set them from the communicator (comm.rank(), comm.size()):
  /// left at 0 of 1 under mpirun, every rank reads, and trains on, all the data.
  int rank = 0, ranks = 1;
  /// Decoding threads; 0 decodes in the caller's thread. Batches are the same for any count.
  int workers = 1;
  int64_t queue_batches = 4;             ///< ready batches kept ahead (with workers)
  int64_t chunk_bytes = int64_t{4} << 20;  ///< text: bytes per decoding chunk
  /// Shuffle each epoch: chunks (text) or blocks (cache) in a random order, and records within
  /// windows of shuffle_buffer records; deterministic in (shuffle_seed, epoch, rank).
  bool shuffle = false;
  uint64_t shuffle_seed = 0;
  int64_t shuffle_buffer = 65536;
  BadRecordPolicy on_bad_record = BadRecordPolicy::kFail;
  /// kSkip: more than this many bad records on one rank in one epoch stops with an error.
  int64_t max_bad_records = INT64_MAX;
  /// Text: count the records of all files on a background thread (total_records(), the ETA of
  /// progress lines; one extra read of the data, so lockstep-train asks it of rank 0 only).
  bool count_records = false;
};

/// Bad records a file source skipped in the current epoch.
struct BadRecordStats {
  int64_t total = 0;
  std::map<std::string, int64_t> per_reason;                 ///< e.g. {"bad id", 3}
  std::map<std::string, std::vector<std::string>> examples;  ///< ≤ 3 per reason, "file:line: …"
};

/// Text records (any format of the schema: tsv, csv with a header, libsvm, libfm; docs/data.md)
/// from files read once across ranks: each rank reads only its share (data::plan_share: whole
/// files, or byte ranges split at record boundaries) and batches span file boundaries, so every
/// batch but a rank's last is full. Decoding runs on worker threads ahead of the trainer.
/// Sample ids are the record's byte offset in the concatenation of the files (in list order):
/// unique and the same whatever the rank count. Files are memory-mapped at construction (an
/// unreadable file fails then).
class TextBatchSource final : public BatchSource {
 public:
  TextBatchSource(std::vector<std::string> files, data::Schema schema, FileSourceOptions options);
  ~TextBatchSource() override;
  void start_epoch(int64_t epoch) override;
  bool next(data::Batch& out) override;
  std::string epoch_report() const override;
  /// With options.count_records: the lines of all files (headers excepted), counted by a
  /// background thread started at construction; -1 until it is done, or without.
  int64_t total_records() const override;

  const BadRecordStats& bad_records() const;
  /// Whether this rank reads whole files (else byte ranges); the bytes of its share.
  bool whole_files() const;
  uint64_t share_bytes() const;
  /// Seconds next() waited for a decoded batch.
  double wait_seconds() const;

 private:
  struct Impl;
  struct Counter;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Counter> counter_;  // declared last: stopped and joined first
};

/// Binary cache files (lockstep/data/cache.h, written by `lockstep-data convert`), memory-mapped:
/// the blocks of all files, in order, are dealt to ranks in contiguous runs balanced by records
/// (a block goes to the rank whose share of the records holds its first record), decoded on
/// worker threads ahead of the trainer, shuffled by block and within a window when asked. The
/// records (sample ids included) are those the cache was written from. All files must hold the
/// same schema.
class CacheBatchSource final : public BatchSource {
 public:
  CacheBatchSource(std::vector<std::string> files, FileSourceOptions options);
  ~CacheBatchSource() override;
  void start_epoch(int64_t epoch) override;
  bool next(data::Batch& out) override;

  const data::Schema& schema() const;
  /// Records in all files, and in this rank's blocks.
  int64_t records() const;
  int64_t total_records() const override { return records(); }
  int64_t share_records() const;
  /// Each file's header.
  std::vector<const data::CacheInfo*> infos() const;
  /// The sorted distinct ids of Batch::sparse slot `slot` over all files, when every file stores
  /// its vocabulary (else false).
  bool vocabulary(int64_t slot, std::vector<uint64_t>& out) const;
  double wait_seconds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Whether `path` starts with the cache magic (a file `lockstep-data convert` wrote).
bool is_cache_file(const std::string& path);

}  // namespace lockstep::train

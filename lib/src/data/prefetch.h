#pragma once
// The prefetching reader behind the file and cache batch sources: chunks (byte ranges of text
// files, blocks of a cache) are decoded on worker threads, assembled in order into batches of a
// fixed size (optionally shuffled within a window of records), and queued ahead of the trainer.
//
// Determinism: a batch's records depend only on the chunk order, the decoder, the batch size and
// the shuffle seed, never on the number of workers or on timing: chunks are decoded in any order
// but assembled strictly in chunk order. A failure (an I/O error, a bad record under the "fail"
// policy) reaches next() at its place in the stream, after the batches before it.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/data/batch.h"

namespace lockstep::data {

/// A record a decoder rejected: where it starts (file index and byte offset: the line number is
/// worked out only when needed) and why.
struct BadRecordAt {
  std::string reason;
  int64_t file = 0;
  uint64_t offset = 0;
  std::string message;
};

/// What a decoder produces from one chunk: its good records, and its bad ones in record order.
struct Fragment {
  Batch records;
  std::vector<BadRecordAt> bad;
};

struct PrefetchOptions {
  int64_t batch_size = 1024;
  int workers = 1;             ///< decoding threads; 0 decodes in the caller's thread
  int64_t queue_batches = 4;   ///< ready batches kept ahead of the consumer (threads only)
  int64_t ahead_chunks = 8;    ///< chunks decoded ahead of assembly (threads only)
  int64_t shuffle_buffer = 0;  ///< > 1: records are shuffled within windows of this many
};

class Prefetcher {
 public:
  /// Decodes chunk `chunk` into `out` (whose fields start empty, with `num_sparse` columns).
  /// Called from several threads at once with different chunks.
  using Decode = std::function<void(int64_t chunk, Fragment& out)>;
  /// Sees every bad record in stream order (on the assembling thread); throws to stop reading.
  using OnBad = std::function<void(const BadRecordAt&)>;

  Prefetcher(PrefetchOptions options, int64_t num_sparse);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  /// Starts a pass over `chunks` (chunk ids, in reading order), stopping any pass in progress.
  /// `shuffle_seed` seeds the within-window shuffle.
  void start(std::vector<int64_t> chunks, uint64_t shuffle_seed, Decode decode, OnBad on_bad);
  /// The next batch of the pass (at most batch_size records, all full but the last), or false at
  /// the end. Rethrows a decoding or bad-record failure at its place in the stream.
  bool next(Batch& out);
  /// Seconds next() spent waiting for a batch since construction.
  double wait_seconds() const { return wait_seconds_; }
  /// Stops the threads of the current pass (also done by start() and the destructor).
  void stop();

 private:
  struct Stopped {};
  bool produce(Batch& out);           // the next batch, assembling fragments in order
  void fetch(int64_t index, Fragment& out);  // fragment `index` of the pass, decoded
  void decode_into(int64_t index, Fragment& out);
  void worker_loop();
  void assembler_loop();

  PrefetchOptions options_;
  int64_t num_sparse_;
  std::vector<int64_t> chunks_;
  uint64_t seed_ = 0;
  Decode decode_;
  OnBad on_bad_;
  double wait_seconds_ = 0;

  // Assembly state (the assembler thread, or the caller without workers).
  int64_t next_fragment_ = 0;  // the next fragment to assemble
  Batch window_;               // records not yet handed out
  int64_t window_pos_ = 0;     // first record of window_ not yet handed out
  std::vector<int64_t> order_;  // shuffled order of window_'s records
  uint64_t window_count_ = 0;
  bool exhausted_ = false;
  bool started_ = false;

  // Threads.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t next_to_decode_ = 0;
  std::map<int64_t, Fragment> decoded_;
  std::map<int64_t, std::exception_ptr> failed_;
  std::deque<Batch> ready_;
  bool ready_end_ = false;
  std::exception_ptr ready_error_;
  std::vector<std::thread> workers_;
  std::thread assembler_;
};

/// One epoch's reading order of `n` chunks (0..n-1, permuted when `shuffle`) and the seed of its
/// within-window shuffle: deterministic in (seed, epoch, rank), the same for text and cache.
struct EpochOrder {
  std::vector<int64_t> chunks;
  uint64_t window_seed = 0;
};
EpochOrder epoch_order(size_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank);

/// Appends records [begin, begin + count) of `src` to `dst` (same layout).
void append_records(const Batch& src, int64_t begin, int64_t count, Batch& dst);
/// Clears `b` to size 0 with `num_sparse` empty columns, keeping capacity.
void clear_batch(Batch& b, int64_t num_sparse);

}  // namespace lockstep::data

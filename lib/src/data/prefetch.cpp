#include "data/prefetch.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "core/scoped_seconds.h"
#include "lockstep/core/error.h"

namespace lockstep::data {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64: seeds from (seed, epoch, rank)
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

EpochOrder epoch_order(size_t n, bool shuffle, uint64_t seed, int64_t epoch, int rank) {
  EpochOrder o;
  o.chunks.resize(n);
  std::iota(o.chunks.begin(), o.chunks.end(), int64_t{0});
  const uint64_t s = mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^
                     mix(static_cast<uint64_t>(rank) + 0x51ed);
  if (shuffle) {
    std::mt19937_64 rng(s);
    for (size_t i = n; i > 1; --i)
      std::swap(o.chunks[i - 1], o.chunks[static_cast<size_t>(rng() % i)]);
  }
  o.window_seed = mix(s);
  return o;
}

void clear_batch(Batch& b, int64_t num_sparse) {
  b.size = 0;
  b.labels.clear();
  b.dense.clear();
  b.sample_ids.clear();
  b.sparse.resize(static_cast<size_t>(num_sparse));
  for (SparseColumn& c : b.sparse) {
    c.offsets.assign(1, 0);
    c.keys.clear();
  }
}

void append_records(const Batch& src, int64_t begin, int64_t count, Batch& dst) {
  if (count <= 0) return;
  const int64_t end = begin + count;
  const int64_t width = src.size > 0 ? static_cast<int64_t>(src.dense.size()) / src.size : 0;
  dst.labels.insert(dst.labels.end(), src.labels.begin() + begin, src.labels.begin() + end);
  dst.sample_ids.insert(dst.sample_ids.end(), src.sample_ids.begin() + begin,
                        src.sample_ids.begin() + end);
  dst.dense.insert(dst.dense.end(), src.dense.begin() + begin * width,
                   src.dense.begin() + end * width);
  for (size_t s = 0; s < src.sparse.size(); ++s) {
    const SparseColumn& a = src.sparse[s];
    SparseColumn& b = dst.sparse[s];
    const int64_t lo = a.offsets[begin], shift = static_cast<int64_t>(b.keys.size()) - lo;
    b.keys.insert(b.keys.end(), a.keys.begin() + lo, a.keys.begin() + a.offsets[end]);
    for (int64_t i = begin + 1; i <= end; ++i) b.offsets.push_back(a.offsets[i] + shift);
  }
  dst.size += count;
}

Prefetcher::Prefetcher(PrefetchOptions options, int64_t num_sparse)
    : options_(options), num_sparse_(num_sparse) {
  LOCKSTEP_CHECK(options_.batch_size >= 1, "batch size = {} must be >= 1", options_.batch_size);
  options_.workers = std::max(options_.workers, 0);
  options_.queue_batches = std::max<int64_t>(options_.queue_batches, 1);
  options_.ahead_chunks = std::max<int64_t>(options_.ahead_chunks, 1);
}

Prefetcher::~Prefetcher() { stop(); }

void Prefetcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  if (assembler_.joinable()) assembler_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = false;
  decoded_.clear();
  failed_.clear();
  ready_.clear();
  ready_end_ = false;
  ready_error_ = nullptr;
}

void Prefetcher::start(std::vector<int64_t> chunks, uint64_t shuffle_seed, Decode decode,
                       OnBad on_bad) {
  stop();
  chunks_ = std::move(chunks);
  seed_ = shuffle_seed;
  decode_ = std::move(decode);
  on_bad_ = std::move(on_bad);
  next_fragment_ = 0;
  next_to_decode_ = 0;
  clear_batch(window_, num_sparse_);
  window_pos_ = 0;
  window_count_ = 0;
  exhausted_ = false;
  started_ = true;
  if (options_.workers == 0) return;
  for (int w = 0; w < options_.workers; ++w) workers_.emplace_back([this] { worker_loop(); });
  assembler_ = std::thread([this] { assembler_loop(); });
}

void Prefetcher::decode_into(int64_t index, Fragment& out) {
  clear_batch(out.records, num_sparse_);
  out.bad.clear();
  decode_(chunks_[static_cast<size_t>(index)], out);
}

void Prefetcher::worker_loop() {
  const auto n = static_cast<int64_t>(chunks_.size());
  while (true) {
    int64_t index = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || next_to_decode_ >= n ||
               next_to_decode_ < next_fragment_ + options_.ahead_chunks;
      });
      if (stop_ || next_to_decode_ >= n) return;
      index = next_to_decode_++;
    }
    Fragment f;
    std::exception_ptr error;
    try {
      decode_into(index, f);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (error) failed_[index] = error;
      else decoded_[index] = std::move(f);
    }
    cv_.notify_all();
  }
}

void Prefetcher::fetch(int64_t index, Fragment& out) {
  if (options_.workers == 0) {
    decode_into(index, out);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stop_ || decoded_.count(index) || failed_.count(index); });
  if (stop_) throw Stopped{};
  if (const auto it = failed_.find(index); it != failed_.end()) std::rethrow_exception(it->second);
  out = std::move(decoded_[index]);
  decoded_.erase(index);
}

bool Prefetcher::produce(Batch& out) {
  clear_batch(out, num_sparse_);
  const bool shuffle = options_.shuffle_buffer > 1;
  while (out.size < options_.batch_size) {
    if (window_pos_ >= window_.size) {
      if (exhausted_) break;
      clear_batch(window_, num_sparse_);
      window_pos_ = 0;
      while (true) {
        if (next_fragment_ >= static_cast<int64_t>(chunks_.size())) {
          exhausted_ = true;
          break;
        }
        Fragment f;
        fetch(next_fragment_, f);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++next_fragment_;  // workers may decode further ahead now
        }
        cv_.notify_all();
        for (const BadRecordAt& bad : f.bad) on_bad_(bad);
        if (window_.size == 0) std::swap(window_, f.records);
        else append_records(f.records, 0, f.records.size, window_);
        if (!shuffle || window_.size >= options_.shuffle_buffer) break;
      }
      if (shuffle) {
        order_.resize(static_cast<size_t>(window_.size));
        std::iota(order_.begin(), order_.end(), int64_t{0});
        std::mt19937_64 rng(seed_ ^ (0x9e3779b97f4a7c15ULL * ++window_count_));
        for (int64_t i = window_.size - 1; i > 0; --i) {  // Fisher-Yates, portable
          const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
          std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
        }
      }
      continue;
    }
    const int64_t take = std::min(options_.batch_size - out.size, window_.size - window_pos_);
    if (!shuffle) {
      append_records(window_, window_pos_, take, out);
    } else {
      for (int64_t k = 0; k < take; ++k)
        append_records(window_, order_[static_cast<size_t>(window_pos_ + k)], 1, out);
    }
    window_pos_ += take;
  }
  return out.size > 0;
}

void Prefetcher::assembler_loop() {
  try {
    while (true) {
      Batch b;
      const bool more = produce(b);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || static_cast<int64_t>(ready_.size()) < options_.queue_batches;
      });
      if (stop_) return;
      if (!more) {
        ready_end_ = true;
        cv_.notify_all();
        return;
      }
      ready_.push_back(std::move(b));
      cv_.notify_all();
    }
  } catch (const Stopped&) {
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    ready_error_ = std::current_exception();
    cv_.notify_all();
  }
}

bool Prefetcher::next(Batch& out) {
  const ScopedSeconds waiting(wait_seconds_);
  if (!started_) return false;  // no pass started yet: nothing to read
  if (options_.workers == 0) return produce(out);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || ready_end_ || ready_error_; });
  if (!ready_.empty()) {
    out = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return true;
  }
  if (ready_error_) std::rethrow_exception(ready_error_);
  return false;
}

}  // namespace lockstep::data

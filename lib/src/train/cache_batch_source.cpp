// CacheBatchSource: binary cache files, blocks dealt to ranks, decoded on worker threads.

#include <algorithm>
#include <cstring>
#include <fstream>

#include "data/prefetch.h"
#include "lockstep/core/error.h"
#include "lockstep/data/cache.h"
#include "lockstep/train/batch_source.h"

namespace lockstep::train {

namespace {

struct Block {
  size_t file;
  int64_t block;
};

}  // namespace

bool is_cache_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::memcmp(magic, "LSDCACHE", 8) == 0;
}

struct CacheBatchSource::Impl {
  std::vector<data::CacheReader> readers;
  FileSourceOptions options;
  std::vector<Block> blocks;  // this rank's, in file order
  int64_t records = 0, share_records = 0;
  data::Prefetcher prefetcher;

  Impl(const std::vector<std::string>& files, FileSourceOptions o)
      : options(o),
        prefetcher(data::PrefetchOptions{o.batch_size, o.workers, o.queue_batches,
                                         std::max<int64_t>(2 * o.workers, 2),
                                         o.shuffle ? o.shuffle_buffer : 0},
                   open_all(files)) {
    LOCKSTEP_CHECK(o.rank >= 0 && o.rank < o.ranks, "rank {} outside [0, {})", o.rank, o.ranks);
    for (const auto& r : readers) records += r.info().records;
    // Rank r owns the blocks whose first record lies in [R·r/P, R·(r+1)/P).
    const auto cut = [&](int r) {
      return static_cast<int64_t>((static_cast<__int128>(records) * r) / o.ranks);
    };
    const int64_t lo = cut(o.rank), hi = cut(o.rank + 1);
    int64_t at = 0;
    for (size_t f = 0; f < readers.size(); ++f) {
      for (int64_t b = 0; b < readers[f].num_blocks(); ++b) {
        const int64_t n = readers[f].block_records(b);
        if (at >= lo && at < hi) {
          blocks.push_back({f, b});
          share_records += n;
        }
        at += n;
      }
    }
  }

  int64_t open_all(const std::vector<std::string>& files) {
    LOCKSTEP_CHECK(!files.empty(), "CacheBatchSource: no files");
    for (const auto& f : files) {
      readers.emplace_back(f);
      LOCKSTEP_CHECK(readers.back().schema() == readers.front().schema(),
                     "{}: its schema differs from that of {}: the cache files of one data set "
                     "must hold the same columns",
                     f, files.front());
    }
    return readers.front().schema().num_sparse();
  }
};

CacheBatchSource::CacheBatchSource(std::vector<std::string> files, FileSourceOptions options)
    : impl_(std::make_unique<Impl>(files, options)) {}

CacheBatchSource::~CacheBatchSource() = default;

void CacheBatchSource::start_epoch(int64_t epoch) {
  Impl& m = *impl_;
  data::EpochOrder order = data::epoch_order(m.blocks.size(), m.options.shuffle,
                                             m.options.shuffle_seed, epoch, m.options.rank);
  m.prefetcher.start(
      std::move(order.chunks), order.window_seed,
      [&m](int64_t i, data::Fragment& out) {
        const Block& b = m.blocks[static_cast<size_t>(i)];
        m.readers[b.file].read_block(b.block, out.records);
      },
      [](const data::BadRecordAt&) {});
}

bool CacheBatchSource::next(data::Batch& out) { return impl_->prefetcher.next(out); }
const data::Schema& CacheBatchSource::schema() const { return impl_->readers.front().schema(); }
int64_t CacheBatchSource::records() const { return impl_->records; }
int64_t CacheBatchSource::share_records() const { return impl_->share_records; }
double CacheBatchSource::wait_seconds() const { return impl_->prefetcher.wait_seconds(); }

std::vector<const data::CacheInfo*> CacheBatchSource::infos() const {
  std::vector<const data::CacheInfo*> out;
  for (const auto& r : impl_->readers) out.push_back(&r.info());
  return out;
}

bool CacheBatchSource::vocabulary(int64_t slot, std::vector<uint64_t>& out) const {
  out.clear();
  for (const auto& r : impl_->readers)
    if (!r.info().sparse_stats.at(static_cast<size_t>(slot)).vocabulary_stored) return false;
  for (const auto& r : impl_->readers) {
    const auto v = r.vocabulary(slot);
    out.insert(out.end(), v.begin(), v.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return true;
}

}  // namespace lockstep::train

// TextBatchSource: text files read once across ranks, decoded on worker threads.

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "data/mapped_file.h"
#include "data/prefetch.h"
#include "data/record_parser.h"
#include "lockstep/core/error.h"
#include "lockstep/data/data_files.h"
#include "lockstep/train/batch_source.h"

namespace lockstep::train {

namespace {

constexpr size_t kExamplesPerReason = 3;

struct Chunk {
  int64_t file;
  uint64_t begin, end;  // records starting in [begin, end)
};

}  // namespace

struct TextBatchSource::Impl {
  std::vector<std::string> files;
  data::Schema schema;
  FileSourceOptions options;
  std::vector<uint64_t> sizes, id_base;
  data::Share share;
  std::vector<data::MappedFile> maps;  // by file index; only the share's files are mapped
  std::vector<Chunk> chunks;
  data::Prefetcher prefetcher;
  int64_t epoch = 0;
  BadRecordStats stats;
  // Line numbers of bad records: a cursor per file, so that counting newlines moves forward.
  std::vector<std::pair<uint64_t, int64_t>> line_cursor;  // (offset, line of that offset)

  Impl(std::vector<std::string> f, data::Schema s, FileSourceOptions o)
      : files(std::move(f)),
        schema(std::move(s)),
        options(o),
        prefetcher(data::PrefetchOptions{o.batch_size, o.workers, o.queue_batches,
                                         std::max<int64_t>(2 * o.workers, 2),
                                         o.shuffle ? o.shuffle_buffer : 0},
                   schema.num_sparse()) {
    LOCKSTEP_CHECK(options.batch_size >= 1, "batch size = {} must be >= 1", options.batch_size);
    LOCKSTEP_CHECK(options.chunk_bytes >= 1, "chunk_bytes = {} must be >= 1", options.chunk_bytes);
    LOCKSTEP_CHECK(options.max_bad_records >= 0, "max_bad_records = {} must be >= 0",
                   options.max_bad_records);
    LOCKSTEP_CHECK(schema.num_columns() > 0, "TextBatchSource: the schema has no columns");
    sizes = data::file_sizes(files);
    id_base.resize(sizes.size());
    uint64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      id_base[i] = at;
      at += sizes[i];
    }
    share = data::plan_share(sizes, options.rank, options.ranks);
    maps.resize(files.size());
    line_cursor.assign(files.size(), {0, 1});
    for (const data::FileRange& r : share.ranges) {
      data::MappedFile& m = maps[static_cast<size_t>(r.file)];
      if (m.data() == nullptr) m = data::MappedFile(files[static_cast<size_t>(r.file)]);
      LOCKSTEP_CHECK(m.size() >= r.end, "{}: the file shrank from {} to {} bytes while opening it",
                     files[static_cast<size_t>(r.file)], sizes[static_cast<size_t>(r.file)],
                     m.size());
      for (uint64_t b = r.begin; b < r.end; b += static_cast<uint64_t>(options.chunk_bytes))
        chunks.push_back({r.file, b, std::min(r.end, b + static_cast<uint64_t>(options.chunk_bytes))});
    }
    // Each mapped file's header now, at set-up: a file that does not match the schema fails
    // before training, not when a worker reaches it (held-out files: after an epoch).
    data::RecordParser parser(schema);
    for (size_t f = 0; f < maps.size() && parser.needs_header(); ++f) {
      const data::MappedFile& m = maps[f];
      if (m.data() == nullptr || m.size() == 0) continue;
      const void* nl = std::memchr(m.data(), '\n', m.size());
      const size_t stop =
          nl ? static_cast<size_t>(static_cast<const char*>(nl) - m.data()) : m.size();
      parser.set_header(std::string_view(m.data(), stop), files[f]);
    }
  }

  // The 1-based line of the byte at `offset` of file `f` (counting newlines before it).
  int64_t line_of(int64_t f, uint64_t offset) {
    auto& [at, line] = line_cursor[static_cast<size_t>(f)];
    if (offset < at) at = 0, line = 1;
    const char* d = maps[static_cast<size_t>(f)].data();
    line += std::count(d + at, d + offset, '\n');
    at = offset;
    return line;
  }

  void decode(int64_t index, data::Fragment& out) const {
    const Chunk& c = chunks[static_cast<size_t>(index)];
    const data::MappedFile& m = maps[static_cast<size_t>(c.file)];
    const char* d = m.data();
    const uint64_t n = sizes[static_cast<size_t>(c.file)];
    const auto line_end = [&](uint64_t from) {
      const void* nl = from < n ? std::memchr(d + from, '\n', n - from) : nullptr;
      return nl != nullptr ? static_cast<uint64_t>(static_cast<const char*>(nl) - d) : n;
    };
    data::RecordParser parser(schema);
    uint64_t pos = c.begin;
    if (parser.needs_header()) {
      const uint64_t stop = line_end(0);
      parser.set_header(std::string_view(d, stop), files[static_cast<size_t>(c.file)]);
      if (pos == 0) pos = std::min(n, stop + 1);
    }
    // A record starting before `begin` belongs to the chunk before.
    if (pos > 0 && d[pos - 1] != '\n') pos = std::min(n, line_end(pos) + 1);
    data::BadRecord bad;
    const uint64_t base = id_base[static_cast<size_t>(c.file)];
    while (pos < c.end && pos < n) {
      const uint64_t stop = line_end(pos);
      if (!parser.parse(std::string_view(d + pos, stop - pos), out.records, base + pos, bad)) {
        out.bad.push_back({bad.reason, c.file, pos, bad.message});
        if (options.on_bad_record == BadRecordPolicy::kFail) return;  // the assembler stops
      }
      pos = stop + 1;
    }
  }

  void on_bad(const data::BadRecordAt& b) {
    const std::string& path = files[static_cast<size_t>(b.file)];
    const std::string where = fmt::format("{}:{}: {}", path, line_of(b.file, b.offset), b.message);
    if (options.on_bad_record == BadRecordPolicy::kFail)
      throw Error(fmt::format("{} (--on-bad-record skip drops such records)", where));
    ++stats.total;
    ++stats.per_reason[b.reason];
    auto& ex = stats.examples[b.reason];
    if (ex.size() < kExamplesPerReason) ex.push_back(where);
    LOCKSTEP_CHECK(stats.total <= options.max_bad_records,
                   "more than {} bad records on rank {} in epoch {} (--max-bad-records); the "
                   "last: {}",
                   options.max_bad_records, options.rank, epoch + 1, where);
  }
};

namespace {

/// Counts the records of `files` (lines, a last one without newline included, headers not) into
/// `total` unless `stop` is set first; a file that cannot be read leaves `total` at -1 (the
/// reader reports it).
void count_records(const std::vector<std::string>& files, bool header,
                   const std::atomic<bool>& stop, std::atomic<int64_t>& total) {
  int64_t n = 0;
  try {
    for (const auto& path : files) {
      const data::MappedFile map(path);
      const char* p = map.data();
      const char* end = p + map.size();
      int64_t lines = 0;
      while (p < end && !stop.load(std::memory_order_relaxed)) {
        const char* stop_at = p + std::min<ptrdiff_t>(end - p, ptrdiff_t{1} << 24);
        while (p < stop_at) {
          const void* nl = std::memchr(p, '\n', static_cast<size_t>(stop_at - p));
          if (!nl) {
            p = stop_at;
            break;
          }
          ++lines;
          p = static_cast<const char*>(nl) + 1;
        }
      }
      if (stop.load()) return;
      if (map.size() > 0 && map.data()[map.size() - 1] != '\n') ++lines;
      n += std::max<int64_t>(0, lines - (header && lines > 0 ? 1 : 0));
    }
  } catch (const std::exception&) {
    return;
  }
  total.store(n);
}

}  // namespace

struct TextBatchSource::Counter {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> total{-1};
  std::thread thread;
  ~Counter() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

TextBatchSource::TextBatchSource(std::vector<std::string> files, data::Schema schema,
                                 FileSourceOptions options)
    : impl_(std::make_unique<Impl>(std::move(files), std::move(schema), options)),
      counter_(std::make_unique<Counter>()) {
  if (options.count_records)
    counter_->thread = std::thread(count_records, impl_->files, impl_->schema.format().header,
                                   std::cref(counter_->stop), std::ref(counter_->total));
}

TextBatchSource::~TextBatchSource() = default;

int64_t TextBatchSource::total_records() const { return counter_->total.load(); }

void TextBatchSource::start_epoch(int64_t epoch) {
  Impl& m = *impl_;
  m.epoch = epoch;
  m.stats = BadRecordStats{};
  data::EpochOrder order = data::epoch_order(m.chunks.size(), m.options.shuffle,
                                             m.options.shuffle_seed, epoch, m.options.rank);
  m.prefetcher.start(
      std::move(order.chunks), order.window_seed,
      [&m](int64_t chunk, data::Fragment& out) { m.decode(chunk, out); },
      [&m](const data::BadRecordAt& b) { m.on_bad(b); });
}

bool TextBatchSource::next(data::Batch& out) { return impl_->prefetcher.next(out); }

std::string TextBatchSource::epoch_report() const {
  const BadRecordStats& s = impl_->stats;
  if (s.total == 0) return {};
  std::string out = fmt::format("{} bad record(s) skipped:", s.total);
  for (const auto& [reason, count] : s.per_reason) {
    out += fmt::format(" {} × {}", count, reason);
    const auto it = s.examples.find(reason);
    if (it != s.examples.end()) out += fmt::format(" (e.g. {})", fmt::join(it->second, "; "));
    out += ";";
  }
  out.pop_back();
  return out;
}

const BadRecordStats& TextBatchSource::bad_records() const { return impl_->stats; }
bool TextBatchSource::whole_files() const { return impl_->share.whole_files; }
uint64_t TextBatchSource::share_bytes() const {
  uint64_t total = 0;
  for (const auto& r : impl_->share.ranges) total += r.end - r.begin;
  return total;
}
double TextBatchSource::wait_seconds() const { return impl_->prefetcher.wait_seconds(); }

}  // namespace lockstep::train

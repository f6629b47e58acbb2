#include "lockstep/data/cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>
#include <utility>

#include "data/cache_format.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the data cache stores little-endian integers and floats and reads them in place");

namespace lockstep::data {

namespace fmt_ = cache_format;

bool CacheColumnStats::operator==(const CacheColumnStats& o) const {
  return ids == o.ids && distinct == o.distinct && min_id == o.min_id && max_id == o.max_id &&
         max_length == o.max_length && vocabulary_stored == o.vocabulary_stored &&
         distinct_exact == o.distinct_exact;
}

namespace {

// ---- bytes ---------------------------------------------------------------------------------

void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }

uint64_t xxh64(const uint8_t* p, size_t n) { return XXH64(n ? p : nullptr, n, 0); }

/// Bytes needed to hold `v` (0 for 0).
int byte_width(uint64_t v) {
  int w = 0;
  while (v != 0) {
    ++w;
    v >>= 8;
  }
  return w;
}

bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool add_ok(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

/// The bytes a block decodes to: labels, sample ids, dense, offsets and keys. False on overflow.
bool decoded_bytes_of(uint64_t records, uint64_t num_dense, uint64_t num_sparse,
                      const uint64_t* keys, uint64_t* out) {
  uint64_t per_record = 0, total = 0, t = 0;
  if (!mul_ok(num_dense, 4, &t) || !add_ok(t, 12, &per_record)) return false;
  if (!mul_ok(num_sparse, 8, &t) || !add_ok(per_record, t, &per_record)) return false;
  if (!mul_ok(records, per_record, &total) || !add_ok(total, 8 * num_sparse, &total)) return false;
  for (uint64_t s = 0; s < num_sparse; ++s)
    if (!mul_ok(keys[s], 8, &t) || !add_ok(total, t, &total)) return false;
  *out = total;
  return true;
}

// ---- zstd ----------------------------------------------------------------------------------

/// Per-thread decompression state: read_block is const and runs on several threads at once.
struct DecodeContext {
  ZSTD_DCtx* dctx = nullptr;
  std::vector<uint8_t> scratch;
  DecodeContext() : dctx(ZSTD_createDCtx()) {}
  ~DecodeContext() { ZSTD_freeDCtx(dctx); }
  DecodeContext(const DecodeContext&) = delete;
  DecodeContext& operator=(const DecodeContext&) = delete;
};

DecodeContext& decode_context() {
  thread_local DecodeContext ctx;
  LOCKSTEP_CHECK(ctx.dctx != nullptr, "cannot create a zstd decompression context (out of memory)");
  return ctx;
}

/// Appends the zstd frame of [src, src + n) to `out`; returns its size.
size_t compress_into(ZSTD_CCtx* cctx, int level, const void* src, size_t n, std::string& out,
                     const std::string& path) {
  const size_t start = out.size();
  const size_t bound = ZSTD_compressBound(n);
  out.resize(start + bound);
  const size_t r = ZSTD_compressCCtx(cctx, out.data() + start, bound, src, n, level);
  LOCKSTEP_CHECK(!ZSTD_isError(r), "{}: zstd compression failed: {}", path, ZSTD_getErrorName(r));
  out.resize(start + r);
  return r;
}

// ---- packing -------------------------------------------------------------------------------
//
// A stream of n values of `width` bytes is stored as byte planes: plane k (n bytes) holds byte k
// of every value. For ids drawn from a skewed distribution the high planes are nearly constant
// and the low ones nearly random, so zstd compresses the first well and passes the second
// through as raw blocks (a memcpy when decoding) instead of entropy-coding bytes that do not
// compress (docs/data_cache.md, §6, has the measurements).

/// Writes the byte planes of values[i] - base to `out` (resized to n * width).
template <class T>
void pack(const T* values, size_t n, uint64_t base, int width, std::vector<uint8_t>& out) {
  out.resize(n * static_cast<size_t>(width));
  for (int k = 0; k < width; ++k) {
    uint8_t* plane = out.data() + k * n;
    for (size_t i = 0; i < n; ++i)
      plane[i] = static_cast<uint8_t>((static_cast<uint64_t>(values[i]) - base) >> (8 * k));
  }
}

/// The byte planes of the float32 bits of values[0, n).
void pack_floats(const float* values, size_t n, std::vector<uint8_t>& out) {
  out.resize(n * 4);
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &values[i], 4);
    for (int k = 0; k < 4; ++k) out[k * n + i] = static_cast<uint8_t>(bits >> (8 * k));
  }
}

/// Value i of W-byte planes.
template <int W>
inline uint64_t plane_value(const uint8_t* src, size_t n, size_t i) {
  uint64_t v = 0;
  for (int k = 0; k < W; ++k) v |= static_cast<uint64_t>(src[k * n + i]) << (8 * k);
  return v;
}

/// dst[i] = base + value i, for n values in W-byte planes.
template <int W>
void unpack(const uint8_t* src, size_t n, uint64_t base, uint64_t* dst) {
  if constexpr (W == 0) {
    std::fill(dst, dst + n, base);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = base + plane_value<W>(src, n, i);
  }
}

void unpack_width(int width, const uint8_t* src, size_t n, uint64_t base, uint64_t* dst) {
  switch (width) {
    case 0:
      return unpack<0>(src, n, base, dst);
    case 1:
      return unpack<1>(src, n, base, dst);
    case 2:
      return unpack<2>(src, n, base, dst);
    case 3:
      return unpack<3>(src, n, base, dst);
    case 4:
      return unpack<4>(src, n, base, dst);
    case 5:
      return unpack<5>(src, n, base, dst);
    case 6:
      return unpack<6>(src, n, base, dst);
    case 7:
      return unpack<7>(src, n, base, dst);
    default:
      return unpack<8>(src, n, base, dst);
  }
}

/// dst[i] = the float32 whose bits are value i of 4-byte planes.
void unpack_floats(const uint8_t* src, size_t n, float* dst) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(plane_value<4>(src, n, i));
    std::memcpy(&dst[i], &bits, 4);
  }
}

/// offsets[i + 1] = offsets[i] + base + value i, for n lengths in W-byte planes, each at most
/// `max_length`, their sum exactly `total`. Returns the index of the first bad length, n + 1
/// when the sum is wrong, or n when all is well.
template <int W>
size_t unpack_lengths(const uint8_t* src, size_t n, uint64_t base, uint64_t max_length,
                      uint64_t total, int64_t* offsets) {
  uint64_t sum = 0;
  offsets[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t len = base + plane_value<W>(src, n, i);
    // len <= max_length < 2^63 and sum <= total < 2^63: the sum cannot wrap.
    if (len > max_length || len < base) return i;
    sum += len;
    if (sum > total) return n + 1;
    offsets[i + 1] = static_cast<int64_t>(sum);
  }
  return sum == total ? n : n + 1;
}

size_t unpack_lengths_width(int width, const uint8_t* src, size_t n, uint64_t base,
                            uint64_t max_length, uint64_t total, int64_t* offsets) {
  switch (width) {
    case 0:
      return unpack_lengths<0>(src, n, base, max_length, total, offsets);
    case 1:
      return unpack_lengths<1>(src, n, base, max_length, total, offsets);
    case 2:
      return unpack_lengths<2>(src, n, base, max_length, total, offsets);
    case 3:
      return unpack_lengths<3>(src, n, base, max_length, total, offsets);
    case 4:
      return unpack_lengths<4>(src, n, base, max_length, total, offsets);
    case 5:
      return unpack_lengths<5>(src, n, base, max_length, total, offsets);
    case 6:
      return unpack_lengths<6>(src, n, base, max_length, total, offsets);
    case 7:
      return unpack_lengths<7>(src, n, base, max_length, total, offsets);
    default:
      return unpack_lengths<8>(src, n, base, max_length, total, offsets);
  }
}

// ---- distinct ids --------------------------------------------------------------------------

uint64_t mix64(uint64_t x) {  // splitmix64's finalizer: a bijection with full avalanche
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Sorts `v` with a least-significant-byte radix sort (`tmp`: scratch), skipping the bytes in
/// which all values agree: ids of a vocabulary below 2^24 take 3 passes. Several times faster
/// than std::sort on the millions of ids of a block.
void radix_sort(std::vector<uint64_t>& v, std::vector<uint64_t>& tmp) {
  const size_t n = v.size();
  if (n < 1024) {
    std::sort(v.begin(), v.end());
    return;
  }
  std::vector<size_t> counts(8 * 256, 0);
  for (const uint64_t x : v)
    for (int b = 0; b < 8; ++b) ++counts[b * 256 + ((x >> (8 * b)) & 0xff)];
  tmp.resize(n);
  uint64_t* src = v.data();
  uint64_t* dst = tmp.data();
  for (int b = 0; b < 8; ++b) {
    size_t* count = counts.data() + b * 256;
    if (count[(v[0] >> (8 * b)) & 0xff] == n) continue;  // every value has this byte
    size_t sum = 0;
    for (int d = 0; d < 256; ++d) sum += std::exchange(count[d], sum);
    for (size_t i = 0; i < n; ++i) dst[count[(src[i] >> (8 * b)) & 0xff]++] = src[i];
    std::swap(src, dst);
  }
  if (src != v.data()) std::memcpy(v.data(), src, n * 8);
}

/// Counts the distinct ids of one column: exactly (a sorted unique vector, merged from batches
/// of pending ids) up to `limit` distinct ids, then by HyperLogLog.
class DistinctCounter {
 public:
  static constexpr int kLogRegisters = 14;

  explicit DistinctCounter(int64_t limit) : limit_(limit) {}

  void add(const uint64_t* ids, size_t n) {
    if (!registers_.empty()) {
      for (size_t i = 0; i < n; ++i) add_hll(ids[i]);
      return;
    }
    pending_.insert(pending_.end(), ids, ids + n);
    // Merging when the pending ids outnumber the sorted ones keeps the cost O(log) per id; a
    // floor batches small merges, scaled down for a small limit so that it is noticed early.
    const size_t floor =
        static_cast<size_t>(std::min<int64_t>(int64_t{1} << 20, 4 * limit_ + 4096));
    if (pending_.size() >= std::max(sorted_.size(), floor)) compact();
  }

  /// Merges the pending ids; call before exact() / sorted().
  void compact() {
    if (!registers_.empty() || pending_.empty()) return;
    radix_sort(pending_, merged_);
    pending_.erase(std::unique(pending_.begin(), pending_.end()), pending_.end());
    merged_.resize(sorted_.size() + pending_.size());
    merged_.erase(std::set_union(sorted_.begin(), sorted_.end(), pending_.begin(), pending_.end(),
                                 merged_.begin()),
                  merged_.end());
    sorted_.swap(merged_);
    pending_.clear();
    merged_.clear();
    if (static_cast<int64_t>(sorted_.size()) > limit_) {
      registers_.assign(size_t{1} << kLogRegisters, 0);
      for (uint64_t id : sorted_) add_hll(id);
      release(sorted_);
      release(pending_);
      release(merged_);
    }
  }

  bool exact() const { return registers_.empty(); }
  const std::vector<uint64_t>& sorted() const { return sorted_; }

  /// The HyperLogLog estimate (Flajolet et al. 2007, with linear counting for small counts).
  double estimate() const {
    const double m = static_cast<double>(registers_.size());
    double sum = 0;
    int64_t zeros = 0;
    for (uint8_t r : registers_) {
      sum += std::ldexp(1.0, -r);
      zeros += r == 0;
    }
    const double e = 0.7213 / (1 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros > 0) return m * std::log(m / static_cast<double>(zeros));
    return e;
  }

 private:
  static void release(std::vector<uint64_t>& v) { std::vector<uint64_t>().swap(v); }

  void add_hll(uint64_t id) {
    const uint64_t h = mix64(id);
    const size_t index = h >> (64 - kLogRegisters);
    // The rank of the first 1 bit in the remaining bits (a sentinel bounds it).
    const uint64_t rest = (h << kLogRegisters) | (uint64_t{1} << (kLogRegisters - 1));
    const uint8_t rank = static_cast<uint8_t>(__builtin_clzll(rest) + 1);
    registers_[index] = std::max(registers_[index], rank);
  }

  int64_t limit_;
  std::vector<uint64_t> sorted_, pending_, merged_;
  std::vector<uint8_t> registers_;
};

/// Sorted distinct ids as LEB128 varints of the first id and then of each difference.
std::string vocabulary_varints(const std::vector<uint64_t>& sorted) {
  std::string out;
  out.reserve(sorted.size() * 2);
  uint64_t prev = 0;
  for (uint64_t id : sorted) {
    uint64_t v = id - prev;
    prev = id;
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  return out;
}

// ---- header --------------------------------------------------------------------------------

struct BlockEntry {
  uint64_t offset = 0, bytes = 0, records = 0, checksum = 0;
};

struct VocabularyEntry {
  uint64_t offset = 0, bytes = 0, checksum = 0;
};

/// Bounds-checked little-endian reads from the header; errors name the file and the field.
class HeaderCursor {
 public:
  HeaderCursor(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}

  const uint8_t* take(uint64_t k, std::string_view field) {
    LOCKSTEP_CHECK(k <= n_ - pos_,
                   "{}: header field {} ({} bytes at header byte {}) runs past the end of the "
                   "{}-byte header: the header is corrupted",
                   path_, field, k, pos_, n_);
    const uint8_t* at = p_ + pos_;
    pos_ += k;
    return at;
  }
  uint64_t u64(std::string_view field) { return load_u64(take(8, field)); }
  uint32_t u32(std::string_view field) { return load_u32(take(4, field)); }
  /// A u64 field that must lie in [lo, hi].
  uint64_t u64_in(std::string_view field, uint64_t lo, uint64_t hi) {
    const uint64_t v = u64(field);
    LOCKSTEP_CHECK(v >= lo && v <= hi,
                   "{}: header field {} = {} is out of range [{}, {}]: the "
                   "header is corrupted",
                   path_, field, v, lo, hi);
    return v;
  }
  size_t remaining() const { return n_ - pos_; }
  size_t position() const { return pos_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& path_;
};

/// Names of a block's streams for messages.
std::string stream_name(const Schema& schema, size_t stream) {
  if (stream == 0) return "labels";
  if (stream == 1) return "dense values";
  if (stream == 2) return "sample ids";
  const size_t slot = (stream - 3) / 2;
  const std::string& column = schema.columns()[schema.sparse_columns()[slot]].name;
  return fmt::format("{} of column '{}'", (stream - 3) % 2 == 0 ? "lengths" : "keys", column);
}

}  // namespace

// ==== CacheWriter ==============================================================================

struct CacheWriter::Impl {
  std::string path;
  Schema schema;
  CacheWriterOptions options;
  AtomicFileWriter file;
  ZSTD_CCtx* cctx = nullptr;

  Batch pending;                     // the block being filled
  std::vector<BlockEntry> blocks;    // written so far
  std::vector<uint64_t> block_keys;  // (blocks, num_sparse)
  std::vector<int64_t> block_records;
  std::vector<CacheColumnStats> stats;
  std::vector<DistinctCounter> distinct;
  int64_t records = 0;
  uint64_t offset = fmt_::kPreambleBytes;  // bytes written
  int64_t decoded_bytes = 0;
  bool finished = false;
  bool failed = false;

  // Scratch reused between blocks.
  std::string block;
  std::vector<uint8_t> raw;
  std::vector<uint64_t> deltas;

  Impl(std::string p, Schema s, CacheWriterOptions o)
      : path(std::move(p)), schema(std::move(s)), options(std::move(o)), file(path) {}
  ~Impl() { ZSTD_freeCCtx(cctx); }

  void append_records(const Batch& b, int64_t first, int64_t count);
  void flush_block();
  void add_stream(uint8_t coding, int width, uint64_t base, uint64_t first, const void* raw_bytes,
                  size_t raw_size, size_t stream);
};

CacheWriter::CacheWriter(std::string path, Schema schema, CacheWriterOptions options) {
  check_range("cache.block_records", options.block_records, 1, kMaxCacheBlockRecords);
  check_range("cache.zstd_level", static_cast<int64_t>(options.zstd_level), 1, 19);
  check_range("cache.max_vocabulary", options.max_vocabulary, 0, int64_t{1} << 31);
  LOCKSTEP_CHECK(schema.num_columns() > 0, "{}: cannot write a cache of an empty schema", path);
  {  // an existing file is replaced only when it is a cache: never a user's data
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (fs::exists(st)) {
      char magic[sizeof fmt_::kMagic] = {};
      std::ifstream in(path, std::ios::binary);
      const bool cache = fs::is_regular_file(st) && in.read(magic, sizeof magic) &&
                         std::memcmp(magic, fmt_::kMagic, sizeof magic) == 0;
      LOCKSTEP_CHECK(cache,
                     "{}: exists and is not a data cache; a cache replaces only a cache (choose "
                     "another output path, or remove it yourself)",
                     path);
    }
  }
  impl_ = std::make_unique<Impl>(std::move(path), std::move(schema), std::move(options));
  Impl& w = *impl_;
  w.cctx = ZSTD_createCCtx();
  LOCKSTEP_CHECK(w.cctx != nullptr, "{}: cannot create a zstd compression context", w.path);
  w.pending = make_empty_batch(w.schema);
  w.stats.resize(w.schema.num_sparse());
  for (int64_t s = 0; s < w.schema.num_sparse(); ++s)
    w.distinct.emplace_back(w.options.max_vocabulary);
  std::string preamble(fmt_::kMagic, sizeof fmt_::kMagic);
  put_u32(preamble, kCacheFormatVersion);
  put_u32(preamble, 0);
  w.file.write(preamble);
}

CacheWriter::~CacheWriter() = default;
CacheWriter::CacheWriter(CacheWriter&&) noexcept = default;
CacheWriter& CacheWriter::operator=(CacheWriter&&) noexcept = default;

int64_t CacheWriter::records() const { return impl_->records; }
const std::string& CacheWriter::path() const { return impl_->path; }

void CacheWriter::append(const Batch& batch) {
  Impl& w = *impl_;
  LOCKSTEP_CHECK(!w.finished, "{}: append() after finish()", w.path);
  LOCKSTEP_CHECK(!w.failed, "{}: append() after an earlier failure of this writer", w.path);
  check_batch(w.schema, batch, fmt::format("batch appended to cache {}", w.path));
  for (int64_t s = 0; s < w.schema.num_sparse(); ++s) {
    const Column& c = w.schema.columns()[w.schema.sparse_columns()[s]];
    if (c.kind != ColumnKind::kSequence) continue;
    const auto& off = batch.sparse[s].offsets;
    for (int64_t b = 0; b < batch.size; ++b)
      LOCKSTEP_CHECK(off[b + 1] - off[b] <= c.max_len,
                     "batch appended to cache {}: sample {} has {} ids in sequence column '{}', "
                     "more than its max_len = {}",
                     w.path, b, off[b + 1] - off[b], c.name, c.max_len);
  }
  try {
    int64_t done = 0;
    while (done < batch.size) {
      const int64_t n = std::min(batch.size - done, w.options.block_records - w.pending.size);
      w.append_records(batch, done, n);
      done += n;
      if (w.pending.size == w.options.block_records) w.flush_block();
    }
  } catch (...) {
    w.failed = true;
    throw;
  }
}

void CacheWriter::Impl::append_records(const Batch& b, int64_t first, int64_t count) {
  const int64_t d = schema.num_dense();
  pending.labels.insert(pending.labels.end(), b.labels.begin() + first,
                        b.labels.begin() + first + count);
  pending.sample_ids.insert(pending.sample_ids.end(), b.sample_ids.begin() + first,
                            b.sample_ids.begin() + first + count);
  pending.dense.insert(pending.dense.end(), b.dense.begin() + first * d,
                       b.dense.begin() + (first + count) * d);
  for (size_t s = 0; s < b.sparse.size(); ++s) {
    const SparseColumn& src = b.sparse[s];
    SparseColumn& dst = pending.sparse[s];
    const int64_t k0 = src.offsets[first], k1 = src.offsets[first + count];
    const int64_t shift = static_cast<int64_t>(dst.keys.size()) - k0;
    dst.keys.insert(dst.keys.end(), src.keys.begin() + k0, src.keys.begin() + k1);
    for (int64_t i = first + 1; i <= first + count; ++i)
      dst.offsets.push_back(src.offsets[i] + shift);
  }
  pending.size += count;
  records += count;
}

void CacheWriter::Impl::add_stream(uint8_t coding, int width, uint64_t base, uint64_t first,
                                   const void* raw_bytes, size_t raw_size, size_t stream) {
  size_t compressed = 0;
  if (raw_size > 0)
    compressed = compress_into(cctx, options.zstd_level, raw_bytes, raw_size, block, path);
  LOCKSTEP_CHECK(compressed <= UINT32_MAX,
                 "{}: the {} of block {} compress to {} bytes, above "
                 "the 4 GiB a stream may hold: use a smaller block_records",
                 path, stream_name(schema, stream), blocks.size(), compressed);
  uint8_t* d = reinterpret_cast<uint8_t*>(block.data()) + stream * fmt_::kStreamBytes;
  store_u64(d, base);
  store_u64(d + 8, first);
  const uint32_t c32 = static_cast<uint32_t>(compressed);
  std::memcpy(d + 16, &c32, 4);
  d[20] = static_cast<uint8_t>(width);
  d[21] = coding;
  d[22] = d[23] = 0;
}

void CacheWriter::Impl::flush_block() {
  const int64_t n = pending.size;
  if (n == 0) return;
  const size_t num_sparse = pending.sparse.size();
  std::vector<uint64_t> keys(num_sparse);
  for (size_t s = 0; s < num_sparse; ++s) keys[s] = pending.sparse[s].keys.size();
  uint64_t decoded = 0;
  const bool fits = decoded_bytes_of(n, schema.num_dense(), num_sparse, keys.data(), &decoded);
  LOCKSTEP_CHECK(fits && decoded <= static_cast<uint64_t>(kMaxCacheBlockDecodedBytes),
                 "{}: block {} ({} records) would decode to more than {} bytes: use a smaller "
                 "block_records",
                 path, blocks.size(), n, kMaxCacheBlockDecodedBytes);

  block.assign(fmt_::streams_per_block(num_sparse) * fmt_::kStreamBytes, '\0');
  pack_floats(pending.labels.data(), pending.labels.size(), raw);
  add_stream(fmt_::kFloat32, 4, 0, 0, raw.data(), raw.size(), 0);
  pack_floats(pending.dense.data(), pending.dense.size(), raw);
  add_stream(fmt_::kFloat32, 4, 0, 0, raw.data(), raw.size(), 1);

  // Sample ids: deltas between neighbours (mod 2^64), minus the smallest.
  deltas.resize(n - 1);
  uint64_t min_delta = UINT64_MAX, max_delta = 0;
  for (int64_t i = 1; i < n; ++i) {
    deltas[i - 1] = pending.sample_ids[i] - pending.sample_ids[i - 1];
    min_delta = std::min(min_delta, deltas[i - 1]);
    max_delta = std::max(max_delta, deltas[i - 1]);
  }
  if (n == 1) min_delta = max_delta = 0;
  int width = byte_width(max_delta - min_delta);
  pack(deltas.data(), deltas.size(), min_delta, width, raw);
  add_stream(fmt_::kDelta, width, min_delta, pending.sample_ids[0], raw.data(),
             deltas.size() * width, 2);

  for (size_t s = 0; s < num_sparse; ++s) {
    const SparseColumn& col = pending.sparse[s];
    CacheColumnStats& st = stats[s];
    // Lengths.
    uint64_t min_len = UINT64_MAX, max_len = 0;
    deltas.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      deltas[i] = static_cast<uint64_t>(col.offsets[i + 1] - col.offsets[i]);
      min_len = std::min(min_len, deltas[i]);
      max_len = std::max(max_len, deltas[i]);
    }
    width = byte_width(max_len - min_len);
    pack(deltas.data(), n, min_len, width, raw);
    add_stream(fmt_::kFrameOfReference, width, min_len, 0, raw.data(), n * width, 3 + 2 * s);
    // Keys.
    const size_t k = col.keys.size();
    uint64_t min_key = k ? UINT64_MAX : 0, max_key = 0;
    for (uint64_t key : col.keys) {
      min_key = std::min(min_key, key);
      max_key = std::max(max_key, key);
    }
    width = byte_width(max_key - min_key);
    pack(col.keys.data(), k, min_key, width, raw);
    add_stream(fmt_::kFrameOfReference, width, min_key, 0, raw.data(), k * width, 4 + 2 * s);
    // Statistics.
    if (k > 0) {
      st.min_id = st.ids == 0 ? min_key : std::min(st.min_id, min_key);
      st.max_id = st.ids == 0 ? max_key : std::max(st.max_id, max_key);
    }
    st.ids += static_cast<int64_t>(k);
    st.max_length = std::max(st.max_length, static_cast<int64_t>(max_len));
    distinct[s].add(col.keys.data(), k);
  }

  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(block.data());
  blocks.push_back({offset, block.size(), static_cast<uint64_t>(n), xxh64(bytes, block.size())});
  block_keys.insert(block_keys.end(), keys.begin(), keys.end());
  block_records.push_back(n);
  decoded_bytes += static_cast<int64_t>(decoded);
  file.write(block);
  offset += block.size();

  pending.size = 0;
  pending.labels.clear();
  pending.dense.clear();
  pending.sample_ids.clear();
  for (auto& col : pending.sparse) {
    col.keys.clear();
    col.offsets.assign(1, 0);
  }
}

CacheInfo CacheWriter::finish() {
  Impl& w = *impl_;
  LOCKSTEP_CHECK(!w.finished, "{}: finish() called twice", w.path);
  LOCKSTEP_CHECK(!w.failed, "{}: finish() after an earlier failure of this writer", w.path);
  try {
    w.flush_block();
    const size_t num_sparse = w.stats.size();

    // Vocabularies, after the blocks.
    std::vector<VocabularyEntry> vocab(num_sparse);
    for (size_t s = 0; s < num_sparse; ++s) {
      DistinctCounter& counter = w.distinct[s];
      CacheColumnStats& st = w.stats[s];
      counter.compact();
      st.distinct_exact = counter.exact();
      if (counter.exact()) {
        st.distinct = static_cast<int64_t>(counter.sorted().size());
      } else {
        const int64_t e = std::llround(counter.estimate());
        st.distinct = std::clamp<int64_t>(e, st.ids > 0 ? 1 : 0, st.ids);
      }
      st.vocabulary_stored = w.options.store_vocabulary && counter.exact();
      if (!st.vocabulary_stored) continue;
      const std::string varints = vocabulary_varints(counter.sorted());
      w.block.clear();
      if (!varints.empty())
        compress_into(w.cctx, w.options.zstd_level, varints.data(), varints.size(), w.block,
                      w.path);
      vocab[s] = {w.offset, w.block.size(),
                  xxh64(reinterpret_cast<const uint8_t*>(w.block.data()), w.block.size())};
      w.file.write(w.block);
      w.offset += w.block.size();
    }

    // The header.
    const std::string toml = w.schema.to_toml();
    std::string h;
    put_u32(h, kCacheFormatVersion);
    put_u32(h, static_cast<uint32_t>(num_sparse));
    put_u64(h, static_cast<uint64_t>(w.schema.num_dense()));
    put_u64(h, static_cast<uint64_t>(w.records));
    put_u64(h, static_cast<uint64_t>(w.options.block_records));
    put_u64(h, w.blocks.size());
    put_u64(h, toml.size());
    h += toml;
    put_u64(h, w.options.source.size());
    h += w.options.source;
    for (size_t s = 0; s < num_sparse; ++s) {
      const CacheColumnStats& st = w.stats[s];
      put_u64(h, static_cast<uint64_t>(st.ids));
      put_u64(h, static_cast<uint64_t>(st.distinct));
      put_u64(h, st.min_id);
      put_u64(h, st.max_id);
      put_u64(h, static_cast<uint64_t>(st.max_length));
      put_u64(h, (st.vocabulary_stored ? fmt_::kFlagVocabularyStored : 0) |
                     (st.distinct_exact ? fmt_::kFlagDistinctExact : 0));
      put_u64(h, vocab[s].offset);
      put_u64(h, vocab[s].bytes);
      put_u64(h, vocab[s].checksum);
    }
    for (size_t b = 0; b < w.blocks.size(); ++b) {
      const BlockEntry& e = w.blocks[b];
      put_u64(h, e.offset);
      put_u64(h, e.bytes);
      put_u64(h, e.records);
      put_u64(h, e.checksum);
      for (size_t s = 0; s < num_sparse; ++s) put_u64(h, w.block_keys[b * num_sparse + s]);
    }
    std::string trailer;
    put_u64(trailer, w.offset);
    put_u64(trailer, h.size());
    put_u64(trailer, xxh64(reinterpret_cast<const uint8_t*>(h.data()), h.size()));
    trailer.append(fmt_::kMagic, sizeof fmt_::kMagic);
    w.file.write(h);
    w.file.write(trailer);
    w.file.commit();
    w.finished = true;

    CacheInfo info;
    info.version = kCacheFormatVersion;
    info.schema = w.schema;
    info.records = w.records;
    info.max_block_records = w.options.block_records;
    info.block_records = w.block_records;
    info.sparse_stats = w.stats;
    info.source = w.options.source;
    info.file_bytes = static_cast<int64_t>(w.offset + h.size() + trailer.size());
    info.decoded_bytes = w.decoded_bytes;
    return info;
  } catch (...) {
    w.failed = true;
    throw;
  }
}

// ==== CacheReader ==============================================================================

struct CacheReader::Impl {
  std::string path;
  std::string owned;  // from_memory()
  void* map = nullptr;
  size_t map_size = 0;
  const uint8_t* data = nullptr;
  size_t size = 0;

  CacheInfo info;
  std::vector<BlockEntry> blocks;
  std::vector<uint64_t> block_keys;    // (blocks, num_sparse)
  std::vector<int64_t> block_first;    // (blocks + 1)
  std::vector<int64_t> block_decoded;  // (blocks)
  std::vector<VocabularyEntry> vocab;  // (num_sparse)
  std::vector<int64_t> max_len;        // per slot: the column's max_length statistic

  ~Impl() {
    if (map != nullptr) ::munmap(map, map_size);
  }
  void parse();
  void check_block_index(int64_t b) const;
  std::string block_where(int64_t b) const;
};

CacheReader::CacheReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->parse(); }

CacheReader::CacheReader(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LOCKSTEP_CHECK(fd >= 0, "cannot open '{}' for reading: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(fmt::format("cannot read '{}': {}", path, std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(fmt::format("{}: not a regular file: a data cache is a file", path));
  }
  impl->size = static_cast<size_t>(st.st_size);
  if (impl->size > 0) {
    void* m = ::mmap(nullptr, impl->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw Error(fmt::format("cannot map '{}' into memory: {}", path, std::strerror(e)));
    }
    impl->map = m;
    impl->map_size = impl->size;
    impl->data = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  impl_ = std::move(impl);
  impl_->parse();
}

CacheReader CacheReader::from_memory(std::string bytes, std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->path = std::move(name);
  impl->owned = std::move(bytes);
  impl->data = reinterpret_cast<const uint8_t*>(impl->owned.data());
  impl->size = impl->owned.size();
  return CacheReader(std::move(impl));
}

CacheReader::~CacheReader() = default;
CacheReader::CacheReader(CacheReader&&) noexcept = default;
CacheReader& CacheReader::operator=(CacheReader&&) noexcept = default;

const CacheInfo& CacheReader::info() const { return impl_->info; }
const Schema& CacheReader::schema() const { return impl_->info.schema; }
const std::string& CacheReader::path() const { return impl_->path; }
int64_t CacheReader::num_blocks() const { return static_cast<int64_t>(impl_->blocks.size()); }

void CacheReader::Impl::check_block_index(int64_t b) const {
  LOCKSTEP_CHECK(b >= 0 && b < static_cast<int64_t>(blocks.size()),
                 "{}: block {} does not exist: the cache has {} blocks", path, b, blocks.size());
}

std::string CacheReader::Impl::block_where(int64_t b) const {
  return fmt::format("{}: block {} (records {} to {})", path, b, block_first[b],
                     block_first[b + 1] - 1);
}

int64_t CacheReader::block_records(int64_t b) const {
  impl_->check_block_index(b);
  return static_cast<int64_t>(impl_->blocks[b].records);
}
int64_t CacheReader::block_first_record(int64_t b) const {
  impl_->check_block_index(b);
  return impl_->block_first[b];
}
int64_t CacheReader::block_decoded_bytes(int64_t b) const {
  impl_->check_block_index(b);
  return impl_->block_decoded[b];
}

void CacheReader::Impl::parse() {
  const size_t n = size;
  const size_t minimum = fmt_::kPreambleBytes + fmt_::kTrailerBytes;
  LOCKSTEP_CHECK(n >= minimum,
                 "{}: truncated or not a lockstep data cache: {} bytes, fewer than the {} of an "
                 "empty cache",
                 path, n, minimum);
  LOCKSTEP_CHECK(std::memcmp(data, fmt_::kMagic, 8) == 0,
                 "{}: not a lockstep data cache: it does not start with the magic 'LSDCACHE'",
                 path);
  const uint32_t version = load_u32(data + 8);
  LOCKSTEP_CHECK(version >= 1 && version <= kCacheFormatVersion,
                 "{}: cache format version {} is not supported: this lockstep reads versions 1 to "
                 "{} (a cache written by a newer lockstep?)",
                 path, version, kCacheFormatVersion);
  LOCKSTEP_CHECK(load_u32(data + 12) == 0,
                 "{}: the preamble's reserved field is {}, not 0: the file is corrupted", path,
                 load_u32(data + 12));
  const uint8_t* trailer = data + n - fmt_::kTrailerBytes;
  LOCKSTEP_CHECK(std::memcmp(trailer + 24, fmt_::kMagic, 8) == 0,
                 "{}: truncated or incompletely written: the {}-byte file does not end with the "
                 "end marker 'LSDCACHE'",
                 path, n);
  const uint64_t header_offset = load_u64(trailer), header_bytes = load_u64(trailer + 8);
  const uint64_t header_end = n - fmt_::kTrailerBytes;
  LOCKSTEP_CHECK(header_offset >= fmt_::kPreambleBytes && header_offset <= header_end &&
                     header_bytes == header_end - header_offset,
                 "{}: the trailer places the header at byte {} ({} bytes), which does not end "
                 "where the trailer begins (byte {}): the file is truncated or corrupted",
                 path, header_offset, header_bytes, header_end);
  const uint8_t* hp = data + header_offset;
  const uint64_t stored = load_u64(trailer + 16), computed = xxh64(hp, header_bytes);
  LOCKSTEP_CHECK(stored == computed,
                 "{}: header checksum mismatch (stored {}, computed {}): the header is corrupted",
                 path, hex(stored), hex(computed));

  HeaderCursor h(hp, header_bytes, path);
  const uint32_t header_version = h.u32("version");
  LOCKSTEP_CHECK(header_version == version,
                 "{}: the header says format version {} but the preamble {}: the file is "
                 "corrupted",
                 path, header_version, version);
  info.version = version;
  const uint64_t num_sparse = h.u32("num_sparse");
  const uint64_t num_dense = h.u64("num_dense");
  const uint64_t records = h.u64_in("records", 0, kInt64Max);
  const uint64_t max_block =
      h.u64_in("max_block_records", 1, static_cast<uint64_t>(kMaxCacheBlockRecords));
  const uint64_t num_blocks = h.u64("num_blocks");
  const uint64_t schema_bytes = h.u64("schema_bytes");
  const uint8_t* schema_text = h.take(schema_bytes, "schema");
  info.schema =
      Schema::parse(std::string_view(reinterpret_cast<const char*>(schema_text), schema_bytes),
                    path + " (schema in the header)");
  const Schema& schema = info.schema;
  LOCKSTEP_CHECK(num_sparse == static_cast<uint64_t>(schema.num_sparse()) &&
                     num_dense == static_cast<uint64_t>(schema.num_dense()),
                 "{}: the header counts {} sparse columns and {} dense values but its schema has "
                 "{} and {}: the header is corrupted",
                 path, num_sparse, num_dense, schema.num_sparse(), schema.num_dense());
  const uint64_t source_bytes = h.u64("source_bytes");
  const uint8_t* source = h.take(source_bytes, "source");
  info.source.assign(reinterpret_cast<const char*>(source), source_bytes);
  info.records = static_cast<int64_t>(records);
  info.max_block_records = static_cast<int64_t>(max_block);
  info.file_bytes = static_cast<int64_t>(n);

  // Column statistics (num_sparse <= 2^32: the products below cannot overflow).
  LOCKSTEP_CHECK(num_sparse * fmt_::kColumnStatsBytes <= h.remaining(),
                 "{}: the header ends inside its column statistics: the header is corrupted", path);
  info.sparse_stats.resize(num_sparse);
  vocab.resize(num_sparse);
  max_len.resize(num_sparse);
  for (uint64_t s = 0; s < num_sparse; ++s) {
    const Column& col = schema.columns()[schema.sparse_columns()[s]];
    const std::string what = fmt::format("column '{}'", col.name);
    CacheColumnStats& st = info.sparse_stats[s];
    const uint64_t ids = h.u64_in(what + " ids", 0, kInt64Max);
    const uint64_t distinct = h.u64_in(what + " distinct", ids > 0 ? 1 : 0, ids);
    st.ids = static_cast<int64_t>(ids);
    st.distinct = static_cast<int64_t>(distinct);
    st.min_id = h.u64(what + " min_id");
    st.max_id = h.u64(what + " max_id");
    const uint64_t longest = col.kind == ColumnKind::kSequence
                                 ? std::min<uint64_t>(ids, static_cast<uint64_t>(col.max_len))
                                 : ids;
    st.max_length = static_cast<int64_t>(h.u64_in(what + " max_length", ids > 0 ? 1 : 0, longest));
    max_len[s] = st.max_length;
    const uint64_t flags =
        h.u64_in(what + " flags", 0, fmt_::kFlagVocabularyStored | fmt_::kFlagDistinctExact);
    st.vocabulary_stored = (flags & fmt_::kFlagVocabularyStored) != 0;
    st.distinct_exact = (flags & fmt_::kFlagDistinctExact) != 0;
    vocab[s].offset = h.u64(what + " vocabulary offset");
    vocab[s].bytes = h.u64(what + " vocabulary bytes");
    vocab[s].checksum = h.u64(what + " vocabulary checksum");
    LOCKSTEP_CHECK(st.min_id <= st.max_id && (ids > 0 || (st.min_id == 0 && st.max_id == 0)),
                   "{}: {} has min_id {} and max_id {} for {} ids: the header is corrupted", path,
                   what, st.min_id, st.max_id, ids);
    LOCKSTEP_CHECK(st.distinct_exact || !st.vocabulary_stored,
                   "{}: {} stores a vocabulary but an inexact distinct count: the header is "
                   "corrupted",
                   path, what);
    LOCKSTEP_CHECK(st.distinct_exact || ids > 0,
                   "{}: {} has no ids but an inexact distinct count: the header is corrupted", path,
                   what);
    if (!st.vocabulary_stored)
      LOCKSTEP_CHECK(vocab[s].offset == 0 && vocab[s].bytes == 0 && vocab[s].checksum == 0,
                     "{}: {} stores no vocabulary but has a vocabulary section: the header is "
                     "corrupted",
                     path, what);
  }

  // Block index: bounded by the header's size before anything is allocated.
  const uint64_t entry_bytes = fmt_::kBlockEntryFixedBytes + 8 * num_sparse;
  LOCKSTEP_CHECK(
      num_blocks <= h.remaining() / entry_bytes && num_blocks * entry_bytes == h.remaining(),
      "{}: the header holds {} bytes after the column statistics, not the {} x {} of "
      "its block index: the header is corrupted",
      path, h.remaining(), num_blocks, entry_bytes);
  blocks.resize(num_blocks);
  block_keys.resize(num_blocks * num_sparse);
  block_first.assign(num_blocks + 1, 0);
  block_decoded.resize(num_blocks);
  info.block_records.resize(num_blocks);
  std::vector<uint64_t> key_sums(num_sparse, 0);
  const uint64_t directory = fmt_::streams_per_block(num_sparse) * fmt_::kStreamBytes;
  uint64_t expected_offset = fmt_::kPreambleBytes, record_sum = 0, decoded_sum = 0;
  for (uint64_t b = 0; b < num_blocks; ++b) {
    BlockEntry& e = blocks[b];
    e.offset = h.u64("block offset");
    e.bytes = h.u64("block bytes");
    e.records = h.u64("block records");
    e.checksum = h.u64("block checksum");
    uint64_t end = 0;
    LOCKSTEP_CHECK(
        e.offset >= fmt_::kPreambleBytes && add_ok(e.offset, e.bytes, &end) && end <= header_offset,
        "{}: block {} at byte {} ({} bytes) lies outside the data section [{}, {}) of "
        "the {}-byte file: the block index is corrupted",
        path, b, e.offset, e.bytes, fmt_::kPreambleBytes, header_offset, n);
    LOCKSTEP_CHECK(e.offset == expected_offset,
                   "{}: block {} starts at byte {}, but the one before it ends at byte {}: the "
                   "block index is corrupted",
                   path, b, e.offset, expected_offset);
    LOCKSTEP_CHECK(e.bytes >= directory,
                   "{}: block {} has {} bytes, fewer than its {}-byte stream directory: the block "
                   "index is corrupted",
                   path, b, e.bytes, directory);
    expected_offset = end;
    LOCKSTEP_CHECK(e.records >= 1 && e.records <= max_block,
                   "{}: block {} has {} records, outside [1, {}] (max_block_records): the block "
                   "index is corrupted",
                   path, b, e.records, max_block);
    uint64_t* keys = block_keys.data() + b * num_sparse;
    for (uint64_t s = 0; s < num_sparse; ++s) {
      keys[s] = h.u64("block keys");
      uint64_t most = 0;
      const bool bounded = !mul_ok(e.records, static_cast<uint64_t>(max_len[s]), &most) ||
                           keys[s] <= most;  // (an overflowing bound bounds nothing)
      LOCKSTEP_CHECK(bounded && add_ok(key_sums[s], keys[s], &key_sums[s]) &&
                         key_sums[s] <= static_cast<uint64_t>(info.sparse_stats[s].ids),
                     "{}: block {} claims {} ids in column '{}', more than its {} records of at "
                     "most {} ids or the column's {} ids: the block index is corrupted",
                     path, b, keys[s], schema.columns()[schema.sparse_columns()[s]].name, e.records,
                     max_len[s], info.sparse_stats[s].ids);
    }
    uint64_t decoded = 0;
    LOCKSTEP_CHECK(decoded_bytes_of(e.records, num_dense, num_sparse, keys, &decoded) &&
                       decoded <= static_cast<uint64_t>(kMaxCacheBlockDecodedBytes),
                   "{}: block {} would decode to more than {} bytes: the block index is corrupted",
                   path, b, kMaxCacheBlockDecodedBytes);
    block_decoded[b] = static_cast<int64_t>(decoded);
    if (!add_ok(decoded_sum, decoded, &decoded_sum)) decoded_sum = UINT64_MAX;
    record_sum += e.records;
    block_first[b + 1] = static_cast<int64_t>(record_sum);
    info.block_records[b] = static_cast<int64_t>(e.records);
  }
  info.decoded_bytes = static_cast<int64_t>(std::min(decoded_sum, kInt64Max));
  LOCKSTEP_CHECK(record_sum == records,
                 "{}: the blocks hold {} records but the header says {}: the header is corrupted",
                 path, record_sum, records);
  for (uint64_t s = 0; s < num_sparse; ++s)
    LOCKSTEP_CHECK(key_sums[s] == static_cast<uint64_t>(info.sparse_stats[s].ids),
                   "{}: the blocks hold {} ids of column '{}' but its statistics say {}: the "
                   "header is corrupted",
                   path, key_sums[s], schema.columns()[schema.sparse_columns()[s]].name,
                   info.sparse_stats[s].ids);
  // Vocabularies follow the blocks, in slot order, up to the header.
  for (uint64_t s = 0; s < num_sparse; ++s) {
    if (!info.sparse_stats[s].vocabulary_stored) continue;
    const VocabularyEntry& v = vocab[s];
    uint64_t end = 0;
    LOCKSTEP_CHECK(
        v.offset == expected_offset && add_ok(v.offset, v.bytes, &end) && end <= header_offset,
        "{}: the vocabulary of column '{}' at byte {} ({} bytes) is not where it "
        "belongs (byte {}, before the header at {}): the header is corrupted",
        path, schema.columns()[schema.sparse_columns()[s]].name, v.offset, v.bytes, expected_offset,
        header_offset);
    expected_offset = end;
  }
  LOCKSTEP_CHECK(expected_offset == header_offset,
                 "{}: {} bytes between the last block or vocabulary (ending at byte {}) and the "
                 "header (byte {}) belong to nothing: the file is corrupted",
                 path, header_offset - expected_offset, expected_offset, header_offset);
}

void CacheReader::read_block(int64_t b, Batch& out) const {
  const Impl& r = *impl_;
  r.check_block_index(b);
  const BlockEntry& e = r.blocks[b];
  const uint8_t* block = r.data + e.offset;
  const uint64_t computed = xxh64(block, e.bytes);
  LOCKSTEP_CHECK(computed == e.checksum,
                 "{}: checksum mismatch (stored {}, computed {}): the block is corrupted",
                 r.block_where(b), hex(e.checksum), hex(computed));

  const Schema& schema = r.info.schema;
  const size_t num_sparse = static_cast<size_t>(schema.num_sparse());
  const size_t num_streams = fmt_::streams_per_block(num_sparse);
  const size_t records = static_cast<size_t>(e.records);
  const uint64_t* keys = r.block_keys.data() + b * num_sparse;

  struct Stream {
    uint64_t base, first;
    uint32_t bytes;
    int width;
    uint8_t coding;
    const uint8_t* frame;
  };
  // The directory, and each stream's frame within the block.
  std::vector<Stream> streams(num_streams);  // (a few dozen bytes; not per record)
  uint64_t at = num_streams * fmt_::kStreamBytes;
  for (size_t i = 0; i < num_streams; ++i) {
    const uint8_t* d = block + i * fmt_::kStreamBytes;
    Stream& s = streams[i];
    s.base = load_u64(d);
    s.first = load_u64(d + 8);
    s.bytes = load_u32(d + 16);
    s.width = d[20];
    s.coding = d[21];
    LOCKSTEP_CHECK(s.bytes <= e.bytes - at,
                   "{}: the {} ({} bytes at block byte {}) run past the block's {} bytes",
                   r.block_where(b), stream_name(schema, i), s.bytes, at, e.bytes);
    s.frame = block + at;
    at += s.bytes;
    const uint8_t coding = i < 2 ? fmt_::kFloat32 : i == 2 ? fmt_::kDelta : fmt_::kFrameOfReference;
    const bool ok =
        s.coding == coding && d[22] == 0 && d[23] == 0 &&
        (coding == fmt_::kFloat32 ? s.width == 4 && s.base == 0 && s.first == 0 : s.width <= 8) &&
        (coding != fmt_::kFrameOfReference || s.first == 0);
    LOCKSTEP_CHECK(ok,
                   "{}: the {} have an unknown coding (coding {}, width {}): the block is "
                   "corrupted",
                   r.block_where(b), stream_name(schema, i), s.coding, s.width);
  }
  LOCKSTEP_CHECK(at == e.bytes,
                 "{}: its streams end at block byte {} of {}: the block is corrupted",
                 r.block_where(b), at, e.bytes);

  DecodeContext& ctx = decode_context();
  // Decompresses stream i, which must hold exactly `raw` bytes, into dst.
  auto decompress = [&](size_t i, void* dst, size_t raw) {
    const Stream& s = streams[i];
    if (raw == 0) {
      LOCKSTEP_CHECK(s.bytes == 0, "{}: the {} hold {} bytes where none are expected",
                     r.block_where(b), stream_name(schema, i), s.bytes);
      return;
    }
    const size_t got = ZSTD_decompressDCtx(ctx.dctx, dst, raw, s.frame, s.bytes);
    LOCKSTEP_CHECK(!ZSTD_isError(got), "{}: the {} do not decompress: {}", r.block_where(b),
                   stream_name(schema, i), ZSTD_getErrorName(got));
    LOCKSTEP_CHECK(got == raw, "{}: the {} decompress to {} bytes, expected {}", r.block_where(b),
                   stream_name(schema, i), got, raw);
  };
  // Decompresses the byte planes of stream i, n values, into the scratch buffer.
  auto decompress_packed = [&](size_t i, size_t n) -> const uint8_t* {
    const size_t raw = n * static_cast<size_t>(streams[i].width);
    if (ctx.scratch.size() < raw) ctx.scratch.resize(raw);
    decompress(i, ctx.scratch.data(), raw);
    return ctx.scratch.data();
  };

  out.size = static_cast<int64_t>(records);
  out.labels.resize(records);
  unpack_floats(decompress_packed(0, records), records, out.labels.data());
  for (size_t i = 0; i < records; ++i) {
    const float y = out.labels[i];
    LOCKSTEP_CHECK(y >= 0.0f && y <= 1.0f, "{}: the label of record {} is {}, outside [0, 1]",
                   r.block_where(b), r.block_first[b] + static_cast<int64_t>(i), y);
  }
  const size_t dense = records * static_cast<size_t>(schema.num_dense());
  out.dense.resize(dense);
  unpack_floats(decompress_packed(1, dense), dense, out.dense.data());

  out.sample_ids.resize(records);
  {
    const uint8_t* packed = decompress_packed(2, records - 1);
    const Stream& s = streams[2];
    uint64_t* ids = out.sample_ids.data();
    unpack_width(s.width, packed, records - 1, s.base, ids + 1);  // the deltas
    uint64_t id = s.first;
    ids[0] = id;
    for (size_t i = 1; i < records; ++i) ids[i] = id += ids[i];
  }

  out.sparse.resize(num_sparse);
  for (size_t slot = 0; slot < num_sparse; ++slot) {
    SparseColumn& col = out.sparse[slot];
    const Stream& lengths = streams[3 + 2 * slot];
    const Stream& key_stream = streams[4 + 2 * slot];
    col.offsets.resize(records + 1);
    const uint8_t* packed = decompress_packed(3 + 2 * slot, records);
    const size_t bad = unpack_lengths_width(lengths.width, packed, records, lengths.base,
                                            static_cast<uint64_t>(r.max_len[slot]), keys[slot],
                                            col.offsets.data());
    LOCKSTEP_CHECK(bad == records, "{}: the lengths of column '{}' {}: the block is corrupted",
                   r.block_where(b), schema.columns()[schema.sparse_columns()[slot]].name,
                   bad < records
                       ? fmt::format("give record {} more than the column's {} ids",
                                     r.block_first[b] + static_cast<int64_t>(bad), r.max_len[slot])
                       : fmt::format("do not add up to its {} ids", keys[slot]));
    const size_t k = static_cast<size_t>(keys[slot]);
    col.keys.resize(k);
    packed = decompress_packed(4 + 2 * slot, k);
    unpack_width(key_stream.width, packed, k, key_stream.base, col.keys.data());
  }
}

std::vector<uint64_t> CacheReader::vocabulary(int64_t slot) const {
  const Impl& r = *impl_;
  const Schema& schema = r.info.schema;
  LOCKSTEP_CHECK(slot >= 0 && slot < schema.num_sparse(),
                 "{}: sparse slot {} does not exist: the schema has {} sparse/sequence columns",
                 r.path, slot, schema.num_sparse());
  const std::string& name = schema.columns()[schema.sparse_columns()[slot]].name;
  const CacheColumnStats& st = r.info.sparse_stats[slot];
  LOCKSTEP_CHECK(st.vocabulary_stored,
                 "{}: column '{}' has no stored vocabulary ({}): write the cache with "
                 "store_vocabulary and a max_vocabulary of at least its distinct ids",
                 r.path, name,
                 st.distinct_exact ? "it was written without"
                                   : "it has more distinct ids than "
                                     "the writer's max_vocabulary");
  const VocabularyEntry& v = r.vocab[slot];
  const uint8_t* frame = r.data + v.offset;
  const uint64_t computed = xxh64(frame, v.bytes);
  LOCKSTEP_CHECK(computed == v.checksum,
                 "{}: the vocabulary of column '{}': checksum mismatch (stored {}, computed {}): "
                 "it is corrupted",
                 r.path, name, hex(v.checksum), hex(computed));
  const auto corrupt = [&](const std::string& what) {
    return Error(
        fmt::format("{}: the vocabulary of column '{}' {}: it is corrupted", r.path, name, what));
  };

  // Streamed in chunks, so that memory grows only with what the frame really holds.
  std::vector<uint64_t> ids;
  const uint64_t distinct = static_cast<uint64_t>(st.distinct);
  ids.reserve(std::min<uint64_t>(distinct, uint64_t{1} << 20));
  if (v.bytes == 0) {
    if (distinct != 0)
      throw corrupt(fmt::format("is empty but the column has {} distinct ids", distinct));
    return ids;
  }
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  LOCKSTEP_CHECK(dctx != nullptr, "cannot create a zstd decompression context (out of memory)");
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 24);
  std::vector<uint8_t> chunk(size_t{1} << 16);
  ZSTD_inBuffer in{frame, v.bytes, 0};
  uint64_t value = 0, prev = 0;
  int shift = 0;
  size_t ret = 1;
  while (in.pos < in.size || ret != 0) {
    ZSTD_outBuffer outbuf{chunk.data(), chunk.size(), 0};
    const size_t in_before = in.pos;
    ret = ZSTD_decompressStream(dctx.get(), &outbuf, &in);
    if (ZSTD_isError(ret))
      throw corrupt(fmt::format("does not decompress: {}", ZSTD_getErrorName(ret)));
    for (size_t i = 0; i < outbuf.pos; ++i) {
      const uint8_t byte = chunk[i];
      if (shift == 63 && (byte & 0x7e) != 0) throw corrupt("holds a varint beyond 64 bits");
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (byte & 0x80) {
        shift += 7;
        if (shift > 63) throw corrupt("holds a varint beyond 64 bits");
        continue;
      }
      // value: the first id, then the difference to the previous one (at least 1).
      if (!ids.empty() && (value == 0 || value > UINT64_MAX - prev))
        throw corrupt("is not strictly increasing");
      if (ids.size() == distinct)
        throw corrupt(fmt::format("holds more than its {} ids", distinct));
      prev = ids.empty() ? value : prev + value;
      ids.push_back(prev);
      value = 0;
      shift = 0;
    }
    if (outbuf.pos == 0 && in.pos == in_before && ret != 0)
      throw corrupt("ends inside its zstd frame");
  }
  if (shift != 0) throw corrupt("ends inside a varint");
  if (ids.size() != distinct)
    throw corrupt(
        fmt::format("holds {} ids, not the column's {} distinct ids", ids.size(), distinct));
  if (!ids.empty() && (ids.front() != st.min_id || ids.back() != st.max_id))
    throw corrupt(fmt::format("spans [{}, {}], not the column's [{}, {}]", ids.front(), ids.back(),
                              st.min_id, st.max_id));
  return ids;
}

// ==== reseal ===================================================================================

std::string cache_format::reseal(std::string bytes) {
  const size_t n = bytes.size();
  if (n < kPreambleBytes + kTrailerBytes) return bytes;
  uint8_t* data = reinterpret_cast<uint8_t*>(bytes.data());
  uint8_t* trailer = data + n - kTrailerBytes;
  const uint64_t header_offset = load_u64(trailer), header_bytes = load_u64(trailer + 8);
  const uint64_t header_end = n - kTrailerBytes;
  if (header_offset > header_end || header_bytes != header_end - header_offset) return bytes;
  uint8_t* h = data + header_offset;
  // Walk the header's fixed fields as the reader does, without its checks.
  uint64_t pos = 0;
  auto have = [&](uint64_t k) { return k <= header_bytes - pos; };
  if (!have(40)) return bytes;
  const uint64_t num_sparse = load_u32(h + 4);
  const uint64_t num_blocks = load_u64(h + 32);
  pos = 40;
  for (int text = 0; text < 2; ++text) {
    if (!have(8)) return bytes;
    const uint64_t len = load_u64(h + pos);
    pos += 8;
    if (!have(len)) return bytes;
    pos += len;
  }
  auto reseal_range = [&](uint8_t* checksum_field, uint64_t offset, uint64_t size) {
    uint64_t end = 0;
    if (add_ok(offset, size, &end) && end <= header_offset)
      store_u64(checksum_field, xxh64(data + offset, size));
  };
  if (!have(num_sparse * kColumnStatsBytes)) return bytes;
  for (uint64_t s = 0; s < num_sparse; ++s, pos += kColumnStatsBytes) {
    uint8_t* st = h + pos;
    if (load_u64(st + 40) & kFlagVocabularyStored)
      reseal_range(st + 64, load_u64(st + 48), load_u64(st + 56));
  }
  const uint64_t entry = kBlockEntryFixedBytes + 8 * num_sparse;
  for (uint64_t b = 0; b < num_blocks && have(entry); ++b, pos += entry)
    reseal_range(h + pos + 24, load_u64(h + pos), load_u64(h + pos + 8));
  store_u64(trailer + 16, xxh64(h, header_bytes));
  return bytes;
}

}  // namespace lockstep::data

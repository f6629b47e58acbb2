#pragma once
// The binary data cache: data::Batch records stored column by column, compressed, checksummed
// and read memory-mapped, so that a trainer decodes records instead of parsing text.
//
// A cache file holds a schema, a sequence of blocks (each up to `block_records` records), per
// sparse/sequence column statistics with, optionally, the column's sorted distinct ids (its
// vocabulary), and a header indexing all of it. Inside a block each column is a separate zstd
// frame of byte planes (byte 0 of every value, then byte 1, ...; zstd compresses the nearly
// constant high bytes of ids well and passes their random low bytes through cheaply):
//
//   labels       float32 bits
//   dense        float32 bits, row-major (records x num_dense)
//   sample ids   delta coded: the first id, then id[i] - id[i-1] minus the smallest such delta,
//                in the fewest whole bytes that hold the largest (consecutive ids: 0 bytes)
//   per sparse slot, in schema order:
//     lengths    ids per record, minus the block's smallest length, in the fewest bytes
//     keys       the ids, oldest first for sequences, minus the block's smallest id, in the
//                fewest bytes that hold the block's largest
//
// Every block carries an XXH64 of its bytes, checked on each read_block(); the header carries an
// XXH64 of itself, checked when the file is opened, as is every offset and size in it (against
// the file's size, without overflow). docs/data_cache.md gives the layout byte by byte, the
// versioning policy and the measured speed.
//
// Writing: CacheWriter (atomic: nothing appears under the path until finish()). Reading:
// CacheReader (mmap; blocks decode concurrently from several threads). Errors throw
// lockstep::Error naming the file, the block or column, and what is wrong, e.g.
// "train.cache: block 3 (records 196608 to 262143): checksum mismatch: the block is corrupted".

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/data/schema.h"

namespace lockstep::data {

/// The newest cache format version this lockstep writes and reads. A reader accepts versions
/// 1 to kCacheFormatVersion and refuses newer ones by name (docs/data_cache.md, §Versioning).
inline constexpr uint32_t kCacheFormatVersion = 1;
/// Most records one block may hold (CacheWriterOptions::block_records).
inline constexpr int64_t kMaxCacheBlockRecords = int64_t{1} << 22;
/// Most bytes one decoded block may occupy in a Batch (CacheReader::block_decoded_bytes): the
/// writer refuses a block above it (use a smaller block_records), the reader a header that
/// claims one.
inline constexpr int64_t kMaxCacheBlockDecodedBytes = int64_t{1} << 31;

/// Statistics of one Batch::sparse slot (a sparse or sequence column) over the whole file.
struct CacheColumnStats {
  int64_t ids = 0;         ///< total ids over all records (repeats counted)
  int64_t distinct = 0;    ///< number of distinct ids: exact when distinct_exact, else estimated
  uint64_t min_id = 0;     ///< smallest id; 0 when the column holds no ids
  uint64_t max_id = 0;     ///< largest id; 0 when the column holds no ids
  int64_t max_length = 0;  ///< most ids in one record
  /// The sorted distinct ids are in the file (CacheReader::vocabulary). Implies distinct_exact.
  bool vocabulary_stored = false;
  /// `distinct` is exact. False only when the column had more than
  /// CacheWriterOptions::max_vocabulary distinct ids: the writer then stops collecting them and
  /// `distinct` is a HyperLogLog estimate (2^14 registers: standard error about 0.8 %).
  bool distinct_exact = true;

  bool operator==(const CacheColumnStats& other) const;
  bool operator!=(const CacheColumnStats& other) const { return !(*this == other); }
};

/// What a cache file holds, from its header.
struct CacheInfo {
  uint32_t version = kCacheFormatVersion;      ///< format version of the file
  Schema schema;                               ///< the records' schema (stored as TOML text)
  int64_t records = 0;                         ///< records in the file
  int64_t max_block_records = 0;               ///< the writer's block_records
  std::vector<int64_t> block_records;          ///< records of each block, in file order
  std::vector<CacheColumnStats> sparse_stats;  ///< per Batch::sparse slot, in schema order
  std::string source;                          ///< free text: where the records came from
  int64_t file_bytes = 0;                      ///< size of the file
  /// Bytes the records occupy decoded in Batches (sum of CacheReader::block_decoded_bytes):
  /// file_bytes / decoded_bytes is the compression ratio.
  int64_t decoded_bytes = 0;
};

/// Options of a CacheWriter.
struct CacheWriterOptions {
  /// Records per block, in [1, kMaxCacheBlockRecords] (the last block may hold fewer). A block is
  /// the unit of decoding, checksumming and of parallel reading.
  int64_t block_records = 65536;
  /// zstd compression level of the blocks and vocabularies, in [1, 19]. On din-bench records,
  /// level 1 writes fastest, decodes fastest and compresses as well as level 3 (higher levels
  /// gain a few % of size for several times the writing time; docs/data_cache.md §6). Data with
  /// more repetition than synthetic ids may gain more from a higher level.
  int zstd_level = 1;
  /// Store each sparse column's sorted distinct ids (when at most max_vocabulary of them).
  bool store_vocabulary = true;
  /// Distinct ids per column counted exactly (and stored, with store_vocabulary), in
  /// [0, 2^31]. A column with more gets an estimated `distinct` and no vocabulary
  /// (CacheColumnStats::distinct_exact). The writer holds up to about 2-3 x 8 bytes per counted
  /// distinct id per column.
  int64_t max_vocabulary = int64_t{1} << 24;
  /// Free text stored in the header (e.g. the text file the records came from).
  std::string source;
};

/// Writes a cache file from batches of one schema.
///
/// Atomic: the records go to a hidden temporary file in the directory of `path`
/// (AtomicFileWriter), which finish() fsyncs and renames to `path`; nothing appears at `path`
/// before, and the temporary file is removed when the writer is destroyed without finish().
/// Move-only; not thread-safe.
class CacheWriter {
 public:
  /// Validates the options (Error naming the option and its range) and creates the temporary
  /// file (Error naming the path when the directory does not exist or is not writable).
  CacheWriter(std::string path, Schema schema, CacheWriterOptions options = {});
  ~CacheWriter();
  CacheWriter(CacheWriter&&) noexcept;
  CacheWriter& operator=(CacheWriter&&) noexcept;
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  /// Appends the records of `batch` (any size, 0 included): they are re-cut into blocks of
  /// block_records, each written as soon as it is full. Throws Error when the batch does not
  /// match the schema (check_batch), a sequence is longer than its column's max_len, a block
  /// would decode to more than kMaxCacheBlockDecodedBytes, or writing fails. After an exception
  /// the writer can only be destroyed (which removes the temporary file).
  void append(const Batch& batch);

  /// Writes the last partial block, the vocabularies and the header, fsyncs and renames the
  /// file into place; returns what the file now holds. Call once; no append() after it.
  CacheInfo finish();

  /// Records appended so far.
  int64_t records() const;
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Reads a cache file through a read-only memory map (or from bytes held in memory).
///
/// Opening validates the whole header: the magic and version, the header checksum, the schema,
/// and every block and vocabulary offset, size and count against the file's size and against
/// each other, so that read_block() never reads outside the file and never allocates more than
/// block_decoded_bytes(). The blocks' own checksums are checked by read_block() (one read of the
/// file at open would cost as much as decoding it).
///
/// Move-only. All const members are thread-safe: several threads may decode blocks at once
/// (each thread keeps its own zstd decompression context). The file must not be truncated while
/// it is mapped (reading a page that no longer exists raises SIGBUS, as with any mmap).
class CacheReader {
 public:
  /// Opens and maps `path`; throws Error "<path>: <what is wrong>" when it cannot be read, is not
  /// a cache (wrong magic), is of an unsupported version, truncated, or its header is corrupted
  /// (checksum) or inconsistent.
  explicit CacheReader(const std::string& path);
  /// The same over the bytes of a cache file held in memory (tests, fuzzing); `name` stands for
  /// the path in error messages.
  static CacheReader from_memory(std::string bytes, std::string name = "memory");
  ~CacheReader();
  CacheReader(CacheReader&&) noexcept;
  CacheReader& operator=(CacheReader&&) noexcept;
  CacheReader(const CacheReader&) = delete;
  CacheReader& operator=(const CacheReader&) = delete;

  const CacheInfo& info() const;
  const Schema& schema() const;
  const std::string& path() const;

  int64_t num_blocks() const;
  /// Records of block b, in [0, num_blocks()) (Error otherwise, as for every per-block call).
  int64_t block_records(int64_t b) const;
  /// Index of the first record of block b within the file (records before it).
  int64_t block_first_record(int64_t b) const;
  /// Bytes block b occupies decoded (labels, dense, sample ids, offsets and keys), known from the
  /// header before reading it.
  int64_t block_decoded_bytes(int64_t b) const;

  /// Replaces `out` with the records of block b, reusing its vectors' capacity. Verifies the
  /// block's checksum first and every decoded length and label; throws Error
  /// "<path>: block <b> (records <first> to <last>): <what>" when it is corrupted. `out` then
  /// satisfies check_batch(schema(), out); after an exception its contents are unspecified.
  void read_block(int64_t b, Batch& out) const;

  /// The sorted distinct ids of sparse slot `slot` (in [0, schema().num_sparse())), checked
  /// against their checksum and the column's stats. Throws Error when the file does not store
  /// them (CacheColumnStats::vocabulary_stored is false) or they are corrupted.
  std::vector<uint64_t> vocabulary(int64_t slot) const;

 private:
  struct Impl;
  explicit CacheReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::data

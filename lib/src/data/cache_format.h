#pragma once
// Internal: the byte layout of a data cache file (lockstep/data/cache.h), shared by the writer,
// the reader, the tests and the fuzz target. docs/data_cache.md describes it in prose; keep the
// two in step.
//
//   preamble   16 bytes   magic "LSDCACHE", u32 version, u32 0
//   blocks     back to back from byte 16; each a stream directory, then the streams' zstd frames
//   vocabs     one zstd frame per column with a stored vocabulary, in slot order
//   header     see below (CacheWriter::finish, CacheReader::Impl::parse); XXH64 in the trailer
//   trailer    32 bytes   u64 header offset, u64 header bytes, u64 header XXH64, magic
//
// Every integer is little-endian.

#include <cstddef>
#include <cstdint>
#include <string>

namespace lockstep::data::cache_format {

inline constexpr char kMagic[8] = {'L', 'S', 'D', 'C', 'A', 'C', 'H', 'E'};
inline constexpr size_t kPreambleBytes = 16;
inline constexpr size_t kTrailerBytes = 32;

/// Header: fixed fields before the schema text.
///   u32 version, u32 num_sparse, u64 num_dense, u64 records, u64 max_block_records,
///   u64 num_blocks, u64 schema bytes + text, u64 source bytes + text,
///   num_sparse x column stats, num_blocks x block entries.
inline constexpr size_t kColumnStatsBytes = 9 * 8;
/// u64 ids, distinct, min_id, max_id, max_length, flags, vocabulary offset, bytes, XXH64.
inline constexpr uint64_t kFlagVocabularyStored = 1;
inline constexpr uint64_t kFlagDistinctExact = 2;
/// Block entry: u64 offset, bytes, records, XXH64, then u64 keys per sparse slot.
inline constexpr size_t kBlockEntryFixedBytes = 4 * 8;

/// Stream descriptor in a block's directory: u64 base, u64 first, u32 compressed bytes,
/// u8 width, u8 coding, u8 0, u8 0.
inline constexpr size_t kStreamBytes = 24;
/// Streams of a block: labels, dense, sample ids, then (lengths, keys) per sparse slot.
inline constexpr size_t streams_per_block(size_t num_sparse) { return 3 + 2 * num_sparse; }

/// How a stream's values are packed. Every coding stores n values of `width` bytes as byte
/// planes: plane k (n bytes) holds byte k of every value (little-endian byte order).
enum Coding : uint8_t {
  kFloat32 = 0,           ///< width 4, base 0, first 0: the values' float32 bits
  kFrameOfReference = 1,  ///< value = base + packed; first 0
  kDelta = 2,  ///< value[0] = first, value[i] = value[i-1] + base + packed[i-1]: n - 1 packed
};

/// Recomputes every checksum of a cache image (blocks, vocabularies and header, in that order)
/// whose trailer and header can be located, leaving the bytes unchanged otherwise. For the fuzz
/// target (so that mutations reach the decoder past the checksums) and for tests that edit a
/// header field and want to see the check behind the checksum.
std::string reseal(std::string bytes);

}  // namespace lockstep::data::cache_format

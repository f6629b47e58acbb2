#pragma once
// Key → row of a hashed embedding table, on the device (issue 14): the staged batch carries the
// raw 64-bit keys and this kernel turns them into rows in place after THE copy, instead of the
// host hashing every key while it prepares the batch.
//
//   row = XXH64(the key's 8 little-endian bytes, seed) % rows
//
// exactly EmbeddingTable::row_of (which calls the xxHash library; a test holds the two equal).

#include "kernels/common.h"
#include "lockstep/core/philox.h"  // LOCKSTEP_HD

namespace lockstep::kernels {

LOCKSTEP_HD uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/// XXH64 of one 64-bit key read as 8 little-endian bytes (the xxHash specification for an input
/// of 8 bytes: one lane, then the avalanche), usable on the host and the device.
LOCKSTEP_HD uint64_t xxh64_of_key(uint64_t key, uint64_t seed) {
  constexpr uint64_t p1 = 0x9E3779B185EBCA87ULL, p2 = 0xC2B2AE3D27D4EB4FULL,
                     p3 = 0x165667B19E3779F9ULL, p4 = 0x85EBCA77C2B2AE63ULL,
                     p5 = 0x27D4EB2F165667C5ULL;
  uint64_t lane = key * p2;  // round(0, key)
  lane = rotl64(lane, 31) * p1;
  uint64_t h = seed + p5 + 8;
  h ^= lane;
  h = rotl64(h, 27) * p1 + p4;
  h ^= h >> 33;
  h *= p2;
  h ^= h >> 29;
  h *= p3;
  h ^= h >> 32;
  return h;
}

// ids[i] = xxh64_of_key(ids[i], seed) % rows for i < n, in place (rows >= 1).
LOCKSTEP_KERNEL_IMPLS(hash_keys_to_rows, const Context& ctx, int64_t n, uint64_t seed, int64_t rows,
                      uint64_t* ids)

template <class T = float>
void hash_keys_to_rows(const Context& ctx, int64_t n, uint64_t seed, int64_t rows, uint64_t* ids) {
  detail::check_size("hash_keys_to_rows", "n", n);
  LOCKSTEP_CHECK(rows >= 1, "hash_keys_to_rows: rows = {} must be >= 1", rows);
  LOCKSTEP_DISPATCH(T, ctx, hash_keys_to_rows, n, seed, rows, ids);
}

}  // namespace lockstep::kernels

#pragma once
// The device side of a dynamic table's key index (issue 13, docs/feasign_store.md "The GPU key
// index"): batched find / insert / erase over an open-addressing bucket array in device memory,
// one thread per key, no host round trip per key.
//
// Layout: `buckets` = mask + 1 (a power of two, at least twice the capacity, so probes stay
// short and an empty bucket always ends one), bucket_keys[b] the key and bucket_slots[b] its slot
// (>= 0), kEmptyBucket (-1) or kErasedBucket (-2, a tombstone). A key's probe starts at
// key_home(key) & mask and moves on linearly. find skips tombstones and stops at an empty
// bucket; insert reuses the first free bucket (empty or tombstone) on its probe.
//
// The key -> slot map is a pure function of the calls (the caller chooses the slots: the lowest
// free ones, as KeyIndex does on the host), so every replica and the CPU reference hold the same
// map; where in the bucket array a key lands may differ between runs on the GPU (threads race for
// free buckets), which no result depends on. Tombstones lengthen probes as feasigns come and
// go: the caller rebuilds the array (fill bucket_slots with kEmptyBucket, insert every held key)
// when they pile up, e.g. at a shrink.

#include "kernels/common.h"
#include "lockstep/core/philox.h"  // LOCKSTEP_HD

namespace lockstep::kernels {

inline constexpr int64_t kEmptyBucket = -1;
inline constexpr int64_t kErasedBucket = -2;

/// splitmix64's finaliser (KeyIndex's too): the low bits that pick the bucket are well mixed even for
/// sequential or structured keys.
LOCKSTEP_HD uint64_t key_home(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/// The slot of `key` in the bucket array, or kEmptyBucket when it is not held: its probe from
/// key_home(key) & mask skips tombstones and ends at an empty bucket. Host and device, for a
/// bucket array no thread changes meanwhile.
LOCKSTEP_HD int64_t key_index_probe(const uint64_t* bucket_keys, const int64_t* bucket_slots,
                                    uint64_t mask, uint64_t key) {
  uint64_t b = key_home(key) & mask;
  for (uint64_t probes = 0; probes <= mask; ++probes, b = (b + 1) & mask) {
    const int64_t s = bucket_slots[b];
    if (s == kEmptyBucket) break;
    if (s >= 0 && bucket_keys[b] == key) return s;
  }
  return kEmptyBucket;
}

/// Buckets for `capacity` keys: the smallest power of two >= 2 · capacity (load factor <= 1/2),
/// as KeyIndex and the feasign store (kernels/feasign_store.h) size their arrays.
inline int64_t key_index_buckets(int64_t capacity) {
  int64_t buckets = 2;
  while (buckets < 2 * capacity) buckets <<= 1;
  return buckets;
}

// slots[i] = the slot of keys[i], or -1 when it is not held (i < n).
LOCKSTEP_KERNEL_IMPLS(key_index_find, const Context& ctx, const uint64_t* bucket_keys,
                      const int64_t* bucket_slots, int64_t mask, int64_t n, const uint64_t* keys,
                      int64_t* slots)
// Inserts keys[i] with slot slots[i] (i < n). The keys must be distinct and not held, and the
// slots >= 0 (the caller's contract: a held key inserted again would be held twice). The array
// must have a free bucket for each (the load factor <= 1/2 guarantees it); a key that finds none
// is an error (InputError::IndexFull: the CPU throws, CUDA records it and inserts the others).
LOCKSTEP_KERNEL_IMPLS(key_index_insert, const Context& ctx, uint64_t* bucket_keys,
                      int64_t* bucket_slots, int64_t mask, int64_t n, const uint64_t* keys,
                      const int64_t* slots)
// Erases keys[i] (i < n; a key not held is ignored): its bucket becomes a tombstone.
LOCKSTEP_KERNEL_IMPLS(key_index_erase, const Context& ctx, const uint64_t* bucket_keys,
                      int64_t* bucket_slots, int64_t mask, int64_t n, const uint64_t* keys)

namespace detail {
inline void check_key_index(const char* op, int64_t mask, int64_t n) {
  LOCKSTEP_CHECK(mask >= 1 && (mask & (mask + 1)) == 0,
                 "{}: mask = {} is not a power of two minus one", op, mask);
  check_size(op, "n", n);
}
}  // namespace detail

template <class T = float>
void key_index_find(const Context& ctx, const uint64_t* bucket_keys, const int64_t* bucket_slots,
                    int64_t mask, int64_t n, const uint64_t* keys, int64_t* slots) {
  detail::check_key_index("key_index_find", mask, n);
  LOCKSTEP_DISPATCH(T, ctx, key_index_find, bucket_keys, bucket_slots, mask, n, keys, slots);
}
template <class T = float>
void key_index_insert(const Context& ctx, uint64_t* bucket_keys, int64_t* bucket_slots,
                      int64_t mask, int64_t n, const uint64_t* keys, const int64_t* slots) {
  detail::check_key_index("key_index_insert", mask, n);
  LOCKSTEP_DISPATCH(T, ctx, key_index_insert, bucket_keys, bucket_slots, mask, n, keys, slots);
}
template <class T = float>
void key_index_erase(const Context& ctx, const uint64_t* bucket_keys, int64_t* bucket_slots,
                     int64_t mask, int64_t n, const uint64_t* keys) {
  detail::check_key_index("key_index_erase", mask, n);
  LOCKSTEP_DISPATCH(T, ctx, key_index_erase, bucket_keys, bucket_slots, mask, n, keys);
}

}  // namespace lockstep::kernels

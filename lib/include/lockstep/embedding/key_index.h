#pragma once
// KeyIndex: the host-side map of a dynamic embedding table (issue 13, docs/feasign_store.md):
// 64-bit feature keys ("feasigns", any value, 0 and 2^64 - 1 included) to slots in
// [0, capacity), with no collision between distinct keys.
//
// Open addressing with linear probing over a power-of-two bucket array at least twice the
// capacity (load factor <= 1/2), occupancy kept apart from the keys so that no key value is
// reserved, and backward-shift deletion (no tombstones: probe lengths do not grow with churn).
// A new key gets the lowest free slot. Every result is a pure function of the sequence of calls,
// so ranks that apply the same inserts and erases hold the same key -> slot map (replicas stay
// bitwise identical); and the slots a future insert hands out depend only on which slots are
// held, so an index rebuilt from its slot -> key map (restore()) continues exactly as the
// original would (bitwise resume).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace lockstep::embedding {

class KeyIndex {
 public:
  /// capacity in [1, 2^40]: the most keys held at once. Throws Error otherwise.
  explicit KeyIndex(int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return size_; }
  bool full() const { return size_ == capacity_; }

  /// The slot of `key`, or -1 when it is not held.
  int64_t find(uint64_t key) const;
  /// The slot of `key`, inserting it when new (*inserted says which); -1 when it is new and the
  /// index is full (nothing changes then).
  int64_t insert(uint64_t key, bool* inserted = nullptr);
  /// Removes `key`; its slot is free again (the lowest free slot is handed out first). False
  /// when not held.
  bool erase(uint64_t key);
  /// The key held in `slot` (slot in [0, capacity), held: see occupied()).
  uint64_t key_of(int64_t slot) const { return slot_keys_[static_cast<size_t>(slot)]; }
  bool occupied(int64_t slot) const { return slot_used_[static_cast<size_t>(slot)] != 0; }
  /// Removes every key; slots are handed out from 0 again.
  void clear();
  /// Rebuilds the index from a slot -> key map: slot s holds slot_keys[s] when used[s] != 0
  /// (capacity() entries each). Throws Error naming the slots when a key is held twice.
  void restore(const uint64_t* slot_keys, const uint8_t* used);

 private:
  size_t home(uint64_t key) const;  // the key's first bucket
  size_t bucket_of(uint64_t key) const;  // its bucket, or the empty bucket ending its probe

  int64_t capacity_, size_ = 0;
  size_t mask_;                          // buckets - 1
  std::vector<uint64_t> bucket_keys_;    // per bucket: the key
  std::vector<int64_t> bucket_slots_;    // per bucket: its slot, -1 when the bucket is empty
  std::vector<uint64_t> slot_keys_;      // per slot: its key
  std::vector<uint8_t> slot_used_;       // per slot: held
  // Free slots below next_fresh_, lowest on top.
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> free_;
  int64_t next_fresh_ = 0;               // slots [next_fresh_, capacity) all free
};

}  // namespace lockstep::embedding

#pragma once
// DeviceKeyIndex: a dynamic table's key index with its bucket array in ctx's device memory (issue
// 13, docs/feasign_store.md "The GPU key index"): batched find / insert / erase through the
// kernels of kernels/key_index.h, one thread per key, and the slot bookkeeping on the host, so
// that for the same calls its key -> slot map equals KeyIndex's (a new key gets the lowest free
// slot): replicas, the CPU and the GPU agree, and a checkpoint of the slot -> key map restores it.
//
// Host work per call is per batch, not per key: insert_new() reads the n new keys back (the slot
// -> key map is kept on the host too), hands out the n lowest free slots (a heap of freed slots
// below a fresh-slot counter) and uploads them; erase() reads the erased keys' slots back once
// (erases happen at shrinks and evictions). Tombstones left by erases are cleared by a rebuild
// once they reach a quarter of the buckets. Not yet used by DynamicTable (the CUDA table is the
// next step of issue 13).

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"

namespace lockstep::embedding {

class DeviceKeyIndex {
 public:
  /// capacity in [1, 2^40]: the most keys held at once. Throws Error otherwise.
  DeviceKeyIndex(const Context& ctx, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t size() const { return size_; }

  /// slots[i] = the slot of keys[i], or -1 when it is not held (i < n; device pointers).
  void find(const Context& ctx, const uint64_t* keys, int64_t n, int64_t* slots) const;
  /// Inserts n distinct keys that are not held, in order: keys[i] gets the i-th lowest free slot,
  /// written to slots[i] (device pointers). Throws Error when n > capacity() - size().
  void insert_new(const Context& ctx, const uint64_t* keys, int64_t n, int64_t* slots);
  /// Erases n keys (device pointer); keys not held are ignored, a key named twice is erased
  /// once. Their slots are free again. Returns how many were held.
  int64_t erase(const Context& ctx, const uint64_t* keys, int64_t n);

 private:
  void rebuild(const Context& ctx);
  void clear_buckets(const Context& ctx);

  int64_t capacity_, size_ = 0, mask_ = 0, tombstones_ = 0;
  Tensor<uint64_t> bucket_keys_;
  Tensor<int64_t> bucket_slots_, scratch_;
  std::vector<uint8_t> slot_used_;   // host: which slots are held
  std::vector<uint64_t> host_keys_;  // host: per slot its key (for rebuilds and checkpoints)
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> free_;
  int64_t next_fresh_ = 0;
};

}  // namespace lockstep::embedding

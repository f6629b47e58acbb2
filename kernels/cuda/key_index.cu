// The device key index (kernels/key_index.h): one thread per key.
#include "kernels/cuda/input_errors.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/key_index.h"

namespace lockstep::kernels::cuda {

namespace {
// A bucket's slot while other threads of the kernel change it by CAS or exchange: a volatile
// load (a relaxed atomic one on a GPU), so the race is well defined.
__device__ inline unsigned long long load_slot(const unsigned long long* slot) {
  return *static_cast<const volatile unsigned long long*>(slot);
}

__global__ void find_kernel(const uint64_t* __restrict__ bucket_keys,
                            const int64_t* __restrict__ bucket_slots, uint64_t mask, int64_t n,
                            const uint64_t* __restrict__ keys, int64_t* __restrict__ slots) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    slots[i] = key_index_probe(bucket_keys, bucket_slots, mask, keys[i]);
  }
}

// Claims the first free bucket on the key's probe with a compare-and-swap on its slot (empty or
// tombstone -> the key's slot), then writes the key. Concurrent inserts of other keys skip a
// claimed bucket without reading its key (the keys are new: none of them can be there), and no
// find runs in the same kernel, so the key written after the claim is seen by every later find.
// A bucket's slot is read through a volatile load: other threads change it by CAS meanwhile (a
// stale value only makes the CAS fail). A key that finds no free bucket is recorded.
__global__ void insert_kernel(ErrorSink sink, uint64_t* __restrict__ bucket_keys,
                              unsigned long long* bucket_slots, uint64_t mask, int64_t n,
                              const uint64_t* __restrict__ keys,
                              const int64_t* __restrict__ slots) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const auto slot = static_cast<unsigned long long>(slots[i]);
    uint64_t b = key_home(keys[i]) & mask;
    bool placed = false;
    for (uint64_t probes = 0; probes <= mask && !placed; ++probes, b = (b + 1) & mask) {
      const unsigned long long seen = load_slot(&bucket_slots[b]);
      if (static_cast<long long>(seen) >= 0) continue;
      placed = atomicCAS(&bucket_slots[b], seen, slot) == seen;
      if (placed) bucket_keys[b] = keys[i];
      // else another key took it: move on (the bucket is held now).
    }
    if (!placed)
      record_input_error(sink, InputError::IndexFull, i, i, static_cast<int64_t>(keys[i]));
  }
}

// Writes a tombstone over the key's slot. Other threads' probes pass over the buckets being
// erased, so the slots are read through volatile loads and the tombstone is written with an
// atomic exchange (a key erased twice writes it twice): whichever value a probe sees, a bucket
// holding another key is passed over.
__global__ void erase_kernel(const uint64_t* __restrict__ bucket_keys,
                             unsigned long long* bucket_slots, uint64_t mask, int64_t n,
                             const uint64_t* __restrict__ keys) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t b = key_home(keys[i]) & mask;
    for (uint64_t probes = 0; probes <= mask; ++probes, b = (b + 1) & mask) {
      const auto s = static_cast<int64_t>(load_slot(&bucket_slots[b]));
      if (s == kEmptyBucket) break;
      if (s >= 0 && bucket_keys[b] == keys[i]) {
        atomicExch(&bucket_slots[b], static_cast<unsigned long long>(kErasedBucket));
        break;
      }
    }
  }
}
}  // namespace

void key_index_find(const Context& ctx, const uint64_t* bucket_keys, const int64_t* bucket_slots,
                    int64_t mask, int64_t n, const uint64_t* keys, int64_t* slots) {
  if (n <= 0) return;
  find_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(bucket_keys, bucket_slots,
                                                           static_cast<uint64_t>(mask), n, keys,
                                                           slots);
  LOCKSTEP_KERNEL_CHECK(ctx, "key_index_find");
}

void key_index_insert(const Context& ctx, uint64_t* bucket_keys, int64_t* bucket_slots,
                      int64_t mask, int64_t n, const uint64_t* keys, const int64_t* slots) {
  if (n <= 0) return;
  static_assert(sizeof(unsigned long long) == sizeof(int64_t), "64-bit CAS on the slots");
  insert_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "key_index_insert"), bucket_keys,
      reinterpret_cast<unsigned long long*>(bucket_slots), static_cast<uint64_t>(mask), n, keys,
      slots);
  LOCKSTEP_KERNEL_CHECK(ctx, "key_index_insert");
}

void key_index_erase(const Context& ctx, const uint64_t* bucket_keys, int64_t* bucket_slots,
                     int64_t mask, int64_t n, const uint64_t* keys) {
  if (n <= 0) return;
  erase_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      bucket_keys, reinterpret_cast<unsigned long long*>(bucket_slots), static_cast<uint64_t>(mask),
      n, keys);
  LOCKSTEP_KERNEL_CHECK(ctx, "key_index_erase");
}

}  // namespace lockstep::kernels::cuda

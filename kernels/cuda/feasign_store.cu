// A dynamic table's decisions on the device (kernels/feasign_store.h): one thread per key or per
// slot. Each thread owns the slot of its key (the step's keys are distinct), so statistics, flags
// and rows need no atomics; buckets are claimed by compare-and-swap as in kernels/cuda/
// key_index.cu, counters and list positions by integer atomics (their final values do not
// depend on the order). What must follow key order — which new key takes which free slot — comes
// from a prefix sum; which feasigns an eviction removes, from a stable sort by (score, key).
#include <cub/cub.cuh>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/workspace.cuh"
#include "kernels/feasign_store.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::kernels::cuda {

namespace {
using ull = unsigned long long;

// The accessor's score without fused multiply-adds (the CPU reference's -ffp-contract=off).
__device__ inline float score_rn(const FeasignRules& r, float show, float click) {
  return __fadd_rn(__fmul_rn(__fsub_rn(show, click), r.nonclk_coeff),
                   __fmul_rn(click, r.click_coeff));
}

// A bucket's slot while other threads change it (volatile: a relaxed load on a GPU).
__device__ inline int64_t load_slot(const int64_t* slot) {
  return *static_cast<const volatile int64_t*>(slot);
}

// The slot of `key`, or -1 (no thread of the kernel changes the buckets).
__device__ inline int64_t find_slot(const FeasignStore& s, uint64_t key) {
  return key_index_probe(s.bucket_keys, s.bucket_slots, static_cast<uint64_t>(s.mask), key);
}

// Claims the first free bucket on the key's probe (other threads insert other new keys).
__device__ inline void insert_key(const FeasignStore& s, uint64_t key, int64_t slot) {
  const auto m = static_cast<uint64_t>(s.mask);
  auto* slots = reinterpret_cast<ull*>(s.bucket_slots);
  uint64_t b = key_home(key) & m;
  for (uint64_t probes = 0; probes <= m; ++probes, b = (b + 1) & m) {
    const int64_t seen = load_slot(&s.bucket_slots[b]);
    if (seen >= 0) continue;
    if (atomicCAS(&slots[b], static_cast<ull>(seen), static_cast<ull>(slot)) ==
        static_cast<ull>(seen)) {
      s.bucket_keys[b] = key;
      return;
    }
  }
}

// Frees a held slot (other threads free other slots): its bucket becomes a tombstone.
__device__ inline void erase_slot(const FeasignStore& s, int64_t slot) {
  const auto m = static_cast<uint64_t>(s.mask);
  uint64_t b = key_home(s.slot_keys[slot]) & m;
  for (uint64_t probes = 0; probes <= m; ++probes, b = (b + 1) & m) {
    const int64_t seen = load_slot(&s.bucket_slots[b]);
    if (seen == kEmptyBucket) break;
    if (seen == slot) {
      atomicExch(reinterpret_cast<ull*>(&s.bucket_slots[b]), static_cast<ull>(kErasedBucket));
      break;
    }
  }
  s.flags[slot] = 0;
  atomicAdd(reinterpret_cast<ull*>(&s.meta[kMetaSize]), static_cast<ull>(-1LL));
  atomicAdd(reinterpret_cast<ull*>(&s.meta[kMetaTombstones]), 1ULL);
}

__device__ inline void add_meta(const FeasignStore& s, int word, int64_t v) {
  atomicAdd(reinterpret_cast<ull*>(&s.meta[word]), static_cast<ull>(v));
}

#define LOCKSTEP_GRID_LOOP(i, n)                                            \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void iota_kernel(int64_t n, int64_t* __restrict__ out) {
  LOCKSTEP_GRID_LOOP(i, n) out[i] = i;
}

__global__ void clear_kernel(FeasignStore s) {
  LOCKSTEP_GRID_LOOP(i, s.mask + 1) {
    s.bucket_slots[i] = kEmptyBucket;
    s.bucket_keys[i] = 0;
  }
  LOCKSTEP_GRID_LOOP(i, s.capacity) {
    s.slot_keys[i] = 0;
    s.flags[i] = 0;
    s.show[i] = s.click[i] = s.delta[i] = 0.0f;
    s.unseen[i] = 0;
    s.free_slots[i] = i;
  }
  LOCKSTEP_GRID_LOOP(i, int64_t{kFeasignMetaWords}) s.meta[i] = 0;
}

__global__ void find_kernel(FeasignStore s, int64_t n_max, const int64_t* __restrict__ count,
                            const uint64_t* __restrict__ keys, int64_t* __restrict__ slots,
                            int64_t* __restrict__ is_new) {
  const int64_t n = min(*count, n_max);
  LOCKSTEP_GRID_LOOP(i, n_max) {
    if (i >= n) {
      is_new[i] = 0;
      continue;
    }
    const int64_t slot = find_slot(s, keys[i]);
    slots[i] = slot;
    is_new[i] = slot < 0 ? 1 : 0;
    if (slot >= 0) s.flags[slot] |= kFeasignInStep;
  }
}

__global__ void count_new_kernel(FeasignStore s, int64_t n_max, const int64_t* __restrict__ count,
                                 const int64_t* __restrict__ is_new,
                                 const int64_t* __restrict__ rank) {
  const int64_t n = min(*count, n_max);
  s.meta[kMetaNew] = n > 0 ? rank[n - 1] + is_new[n - 1] : 0;
}

// free_slots = the slots not held, ascending (is_free scanned into pos).
__global__ void flag_free_kernel(FeasignStore s, int64_t* __restrict__ is_free) {
  LOCKSTEP_GRID_LOOP(i, s.capacity) is_free[i] = (s.flags[i] & kFeasignHeld) ? 0 : 1;
}
__global__ void scatter_free_kernel(FeasignStore s, const int64_t* __restrict__ is_free,
                                    const int64_t* __restrict__ pos) {
  LOCKSTEP_GRID_LOOP(i, s.capacity) if (is_free[i]) s.free_slots[pos[i]] = i;
  if (blockIdx.x == 0 && threadIdx.x == 0) s.meta[kMetaHead] = 0;
}

// Sort keys of an eviction: held slots not in the step first, then by score (a float's bits
// made to order as unsigned; -0 and +0 alike, as the CPU's comparison).
__global__ void evict_order_kernel(FeasignStore s, FeasignRules r,
                                   const int64_t* __restrict__ by_key,
                                   uint64_t* __restrict__ order) {
  LOCKSTEP_GRID_LOOP(j, s.capacity) {
    const int64_t slot = by_key[j];
    const bool candidate = (s.flags[slot] & (kFeasignHeld | kFeasignInStep)) == kFeasignHeld;
    const unsigned u = __float_as_uint(__fadd_rn(score_rn(r, s.show[slot], s.click[slot]), 0.0f));
    const unsigned ordered = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    order[j] = (static_cast<uint64_t>(candidate ? 0 : 1) << 32) | ordered;
  }
}
__global__ void evict_kernel(FeasignStore s, int64_t need, const int64_t* __restrict__ lowest) {
  LOCKSTEP_GRID_LOOP(j, min(need, s.capacity)) {
    const int64_t slot = lowest[j];
    if ((s.flags[slot] & (kFeasignHeld | kFeasignInStep)) != kFeasignHeld) continue;
    erase_slot(s, slot);
    add_meta(s, kMetaEvicted, 1);
  }
}

__global__ void place_kernel(FeasignStore s, FeasignRows<float> rows, int64_t n_max,
                             const int64_t* __restrict__ count, const uint64_t* __restrict__ keys,
                             int64_t* __restrict__ slots, const int64_t* __restrict__ rank) {
  const int64_t n = min(*count, n_max), avail = s.capacity - s.meta[kMetaSize];
  const int64_t head = s.meta[kMetaHead];
  LOCKSTEP_GRID_LOOP(i, n) {
    if (slots[i] >= 0 || rank[i] >= avail) continue;
    const int64_t slot = s.free_slots[head + rank[i]];
    insert_key(s, keys[i], slot);
    start_feasign(s, rows, slot, keys[i]);
    slots[i] = slot;
  }
}
__global__ void place_commit_kernel(FeasignStore s) {
  const int64_t fresh = s.meta[kMetaNew], avail = s.capacity - s.meta[kMetaSize];
  const int64_t placed = min(fresh, avail);
  s.meta[kMetaHead] += placed;
  s.meta[kMetaSize] += placed;
  s.meta[kMetaInserted] += placed;
  s.meta[kMetaDropped] += fresh - placed;
}

__global__ void count_kernel(FeasignStore s, FeasignRules r, FeasignRows<float> rows,
                             FeasignRecords rec, int64_t n_max, const int64_t* __restrict__ count,
                             const uint64_t* __restrict__ keys, const int64_t* __restrict__ slots,
                             const float* __restrict__ records, uint64_t* __restrict__ lr_ids,
                             float* __restrict__ lr_grads, uint64_t* __restrict__ x_ids,
                             int64_t* __restrict__ x_pos, int64_t* lists) {
  const int64_t n = min(*count, n_max), dim = rows.dim;
  LOCKSTEP_GRID_LOOP(i, n) {
    const int64_t slot = slots[i];
    x_pos[i] = -1;
    if (slot < 0) continue;
    const float* rc = records + i * rec.width;
    const float shows = rc[0], clicks = rc[1];
    const float show = __fadd_rn(s.show[slot], shows), click = __fadd_rn(s.click[slot], clicks);
    s.show[slot] = show;
    s.click[slot] = click;
    s.delta[slot] = __fadd_rn(s.delta[slot], score_rn(r, shows, clicks));
    const uint8_t flags = s.flags[slot];
    s.flags[slot] = static_cast<uint8_t>((flags & ~kFeasignInStep) | kFeasignSeen);
    const auto l = static_cast<int64_t>(atomicAdd(reinterpret_cast<ull*>(&lists[0]), 1ULL));
    lr_ids[l] = static_cast<uint64_t>(slot);
    lr_grads[l] = rc[2];
    if (flags & kFeasignAdmitted) {
      const auto x = static_cast<int64_t>(atomicAdd(reinterpret_cast<ull*>(&lists[1]), 1ULL));
      x_ids[x] = static_cast<uint64_t>(slot);
      x_pos[i] = x;  // its row is copied by copy_x_grads_kernel, one thread per element
    } else if (score_rn(r, show, click) >= r.embedx_threshold) {
      s.flags[slot] |= kFeasignAdmitted;
      add_meta(s, kMetaAdmitted, 1);
      for (int64_t d = 0; d < dim; ++d)
        rows.embedx[slot * dim + d] =
            embedding::feasign_init_value(rec.seed, rec.stream, keys[i], d, rec.init_scale);
    }
  }
}

// The embedx update list's gradient rows: element d of record i's row to its list position.
__global__ void copy_x_grads_kernel(int64_t n_max, int64_t dim, int64_t width,
                                    const int64_t* __restrict__ count,
                                    const int64_t* __restrict__ x_pos,
                                    const float* __restrict__ records,
                                    float* __restrict__ x_grads) {
  const int64_t n = min(*count, n_max);
  LOCKSTEP_GRID_LOOP(e, n * dim) {
    const int64_t i = e / dim, d = e % dim, x = x_pos[i];
    if (x >= 0) x_grads[x * dim + d] = records[i * width + 3 + d];
  }
}

__global__ void gather_index_kernel(FeasignStore s, int64_t n, const int64_t* __restrict__ count,
                                    const uint64_t* __restrict__ keys,
                                    int64_t* __restrict__ index) {
  const int64_t given = count ? *count : n;
  LOCKSTEP_GRID_LOOP(i, n) {
    const int64_t slot = i < given ? find_slot(s, keys[i]) : -1;
    index[i] = slot >= 0 && (s.flags[slot] & kFeasignAdmitted) ? slot : -1;
    index[n + i] = slot;
  }
}

__global__ void shrink_kernel(FeasignStore s, FeasignRules r) {
  LOCKSTEP_GRID_LOOP(slot, s.capacity) {
    const uint8_t flags = s.flags[slot];
    if (!(flags & kFeasignHeld)) continue;
    const float show = __fmul_rn(s.show[slot], r.decay), click = __fmul_rn(s.click[slot], r.decay);
    s.show[slot] = show;
    s.click[slot] = click;
    const int32_t unseen = (flags & kFeasignSeen) ? 0 : s.unseen[slot] + 1;
    s.unseen[slot] = unseen;
    s.flags[slot] = static_cast<uint8_t>(flags & ~kFeasignSeen);
    if (score_rn(r, show, click) < r.delete_threshold || unseen > r.delete_after_unseen_days) {
      erase_slot(s, slot);
      add_meta(s, kMetaDeleted, 1);
    }
  }
}

__global__ void clear_buckets_kernel(FeasignStore s) {
  LOCKSTEP_GRID_LOOP(i, s.mask + 1) s.bucket_slots[i] = kEmptyBucket;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    s.meta[kMetaSize] = 0;
    s.meta[kMetaTombstones] = 0;
  }
}
__global__ void reinsert_kernel(FeasignStore s) {
  LOCKSTEP_GRID_LOOP(slot, s.capacity) {
    if (!(s.flags[slot] & kFeasignHeld)) continue;
    insert_key(s, s.slot_keys[slot], slot);
    add_meta(s, kMetaSize, 1);
  }
}

__global__ void mark_saved_kernel(FeasignStore s, FeasignRules r, float base_threshold,
                                  float delta_threshold, int64_t delta_keep_days, bool delta) {
  LOCKSTEP_GRID_LOOP(slot, s.capacity) {
    if (!(s.flags[slot] & kFeasignHeld) ||
        score_rn(r, s.show[slot], s.click[slot]) < base_threshold)
      continue;
    if (delta && (s.delta[slot] < delta_threshold || s.unseen[slot] > delta_keep_days)) continue;
    s.delta[slot] = 0.0f;
  }
}
#undef LOCKSTEP_GRID_LOOP

// An exclusive prefix sum of n int64 (CUB) in `base` scratch after the caller's pieces.
void exclusive_sum(const Context& ctx, const int64_t* in, int64_t* out, int64_t n, void* temp,
                   size_t temp_bytes) {
  LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, temp_bytes, in, out, n, stream_of(ctx)));
}
size_t exclusive_sum_bytes(int64_t n) {
  size_t bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
      nullptr, bytes, static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), n));
  return bytes;
}

void rebuild_free_slots(const Context& ctx, const FeasignStore& s) {
  WorkspaceLayout layout;
  const size_t flag_at = layout.reserve(static_cast<size_t>(s.capacity) * sizeof(int64_t));
  const size_t pos_at = layout.reserve(static_cast<size_t>(s.capacity) * sizeof(int64_t));
  const size_t temp_bytes = exclusive_sum_bytes(s.capacity);
  const size_t temp_at = layout.reserve(temp_bytes);
  void* base = ctx.workspace(layout.bytes());
  auto* is_free = at<int64_t>(base, flag_at);
  auto* pos = at<int64_t>(base, pos_at);
  const cudaStream_t stream = stream_of(ctx);
  flag_free_kernel<<<grid_for(s.capacity), kBlock, 0, stream>>>(s, is_free);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign free slots");
  exclusive_sum(ctx, is_free, pos, s.capacity, at<void>(base, temp_at), temp_bytes);
  scatter_free_kernel<<<grid_for(s.capacity), kBlock, 0, stream>>>(s, is_free, pos);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign free slots");
}
}  // namespace

void feasign_clear(const Context& ctx, const FeasignStore& s) {
  clear_kernel<<<grid_for(s.mask + 1), kBlock, 0, stream_of(ctx)>>>(s);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_clear");
}

void feasign_find(const Context& ctx, const FeasignStore& s, int64_t n_max, const int64_t* count,
                  const uint64_t* keys, int64_t* slots, int64_t* rank) {
  WorkspaceLayout layout;
  const size_t flag_at = layout.reserve(static_cast<size_t>(n_max) * sizeof(int64_t));
  const size_t temp_bytes = exclusive_sum_bytes(n_max);
  const size_t temp_at = layout.reserve(temp_bytes);
  void* base = ctx.workspace(layout.bytes());
  auto* is_new = at<int64_t>(base, flag_at);
  const cudaStream_t stream = stream_of(ctx);
  find_kernel<<<grid_for(n_max), kBlock, 0, stream>>>(s, n_max, count, keys, slots, is_new);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_find");
  exclusive_sum(ctx, is_new, rank, n_max, at<void>(base, temp_at), temp_bytes);
  count_new_kernel<<<1, 1, 0, stream>>>(s, n_max, count, is_new, rank);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_find");
}

void feasign_evict(const Context& ctx, const FeasignStore& s, const FeasignRules& rules,
                   int64_t need) {
  const int64_t cap = s.capacity;
  const auto bytes = static_cast<size_t>(cap) * sizeof(uint64_t);
  size_t sort_bytes = 0;
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), cap));
  WorkspaceLayout layout;
  const size_t slot_at = layout.reserve(bytes), key_at = layout.reserve(bytes),
               by_key_at = layout.reserve(bytes), order_at = layout.reserve(bytes),
               lowest_at = layout.reserve(bytes), temp_at = layout.reserve(sort_bytes);
  void* base = ctx.workspace(layout.bytes());
  auto* slots = at<int64_t>(base, slot_at);
  auto* sorted_keys = at<uint64_t>(base, key_at);
  auto* by_key = at<int64_t>(base, by_key_at);
  auto* order = at<uint64_t>(base, order_at);
  auto* lowest = at<int64_t>(base, lowest_at);
  void* temp = at<void>(base, temp_at);
  const cudaStream_t stream = stream_of(ctx);
  // Slots by key, then stably by (not a candidate, score): the lowest (score, key) first.
  iota_kernel<<<grid_for(cap), kBlock, 0, stream>>>(cap, slots);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_evict");
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, sort_bytes, s.slot_keys, sorted_keys,
                                                      slots, by_key, cap, 0, 64, stream));
  evict_order_kernel<<<grid_for(cap), kBlock, 0, stream>>>(s, rules, by_key, order);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_evict");
  LOCKSTEP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, sort_bytes, order, sorted_keys, by_key,
                                                      lowest, cap, 0, 33, stream));
  evict_kernel<<<grid_for(std::min(need, cap)), kBlock, 0, stream>>>(s, need, lowest);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_evict");
  rebuild_free_slots(ctx, s);
}

void feasign_place(const Context& ctx, const FeasignStore& s, const FeasignRows<float>& rows,
                   int64_t n_max, const int64_t* count, const uint64_t* keys, int64_t* slots,
                   const int64_t* rank) {
  const cudaStream_t stream = stream_of(ctx);
  place_kernel<<<grid_for(n_max), kBlock, 0, stream>>>(s, rows, n_max, count, keys, slots, rank);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_place");
  place_commit_kernel<<<1, 1, 0, stream>>>(s);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_place");
}

void feasign_count(const Context& ctx, const FeasignStore& s, const FeasignRules& rules,
                   const FeasignRows<float>& rows, const FeasignRecords& rec, int64_t n_max,
                   const int64_t* count, const uint64_t* keys, const int64_t* slots,
                   const float* records, uint64_t* lr_ids, float* lr_grads, uint64_t* x_ids,
                   float* x_grads, int64_t* lists) {
  const cudaStream_t stream = stream_of(ctx);
  LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(lists, 0, 2 * sizeof(int64_t), stream));
  if (n_max == 0) return;
  auto* x_pos = static_cast<int64_t*>(ctx.workspace(static_cast<size_t>(n_max) * sizeof(int64_t)));
  count_kernel<<<grid_for(n_max), kBlock, 0, stream>>>(s, rules, rows, rec, n_max, count, keys,
                                                       slots, records, lr_ids, lr_grads, x_ids,
                                                       x_pos, lists);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_count");
  if (rows.dim == 0) return;
  copy_x_grads_kernel<<<grid_for(n_max * rows.dim), kBlock, 0, stream>>>(
      n_max, rows.dim, rec.width, count, x_pos, records, x_grads);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_count");
}

void feasign_gather_index(const Context& ctx, const FeasignStore& s, int64_t n,
                          const int64_t* count, const uint64_t* keys, int64_t* index) {
  gather_index_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(s, n, count, keys, index);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_gather_index");
}

void feasign_shrink(const Context& ctx, const FeasignStore& s, const FeasignRules& rules) {
  shrink_kernel<<<grid_for(s.capacity), kBlock, 0, stream_of(ctx)>>>(s, rules);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_shrink");
  rebuild_free_slots(ctx, s);
}

void feasign_rebuild(const Context& ctx, const FeasignStore& s) {
  const cudaStream_t stream = stream_of(ctx);
  clear_buckets_kernel<<<grid_for(s.mask + 1), kBlock, 0, stream>>>(s);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_rebuild");
  reinsert_kernel<<<grid_for(s.capacity), kBlock, 0, stream>>>(s);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_rebuild");
  rebuild_free_slots(ctx, s);
}

void feasign_mark_saved(const Context& ctx, const FeasignStore& s, const FeasignRules& rules,
                        float base_threshold, float delta_threshold, int64_t delta_keep_days,
                        bool delta) {
  mark_saved_kernel<<<grid_for(s.capacity), kBlock, 0, stream_of(ctx)>>>(
      s, rules, base_threshold, delta_threshold, delta_keep_days, delta);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_mark_saved");
}

}  // namespace lockstep::kernels::cuda

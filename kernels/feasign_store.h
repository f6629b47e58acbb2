#pragma once
// The decisions of a dynamic table on ctx's device (issue 13/14, docs/feasign_store.md "On the
// GPU"): which key holds which slot, its show/click statistics, admission, eviction and shrink,
// kept in ctx's memory and changed only by these kernels, so a step needs no host round trip
// and the CPU reference and CUDA keep the same key -> slot map and statistics bitwise.
//
// The store (FeasignStore, every array in ctx's memory):
//   buckets      the key index's open-addressing array (kernels/key_index.h: mask + 1 buckets,
//                tombstones for erased keys);
//   slot_keys    per slot its key; flags per slot (kFeasignHeld, kFeasignAdmitted, kFeasignSeen,
//                kFeasignInStep); show, click, delta_score, unseen_days per slot;
//   free_slots   capacity entries: free_slots[head .. head + capacity - size) are the free slots
//                in ascending order, so new keys take the lowest free slots, as KeyIndex hands
//                them out (kept by every operation that frees slots: it rebuilds the list);
//   meta         kFeasignMetaWords int64 counters (size, head, this step's new keys, the
//                report's counters, tombstones).
//
// A step's apply: feasign_find (slots of the merged keys; the rank of each new key among them),
// on the host's request feasign_evict (when the new keys may not fit), feasign_place (new keys
// take the lowest free slots in key order; their rows and statistics start afresh), then
// feasign_count (statistics; the lr and embedx update lists; admission with initial values).
// Counts of records come from the device (the merged gradient's count), `n_max` bounds them.
//
// The score rule is the accessor's (lockstep/embedding/feasign_accessor.h), evaluated without
// fused multiply-adds on both sides.

#include "kernels/common.h"
#include "kernels/key_index.h"

namespace lockstep::kernels {

inline constexpr uint8_t kFeasignHeld = 1;
inline constexpr uint8_t kFeasignAdmitted = 2;
inline constexpr uint8_t kFeasignSeen = 4;    // updated since the last boundary
inline constexpr uint8_t kFeasignInStep = 8;  // among this step's keys (find .. count)

enum FeasignMeta : int {
  kMetaSize = 0,  // feasigns held
  kMetaHead,      // the first free entry of free_slots
  kMetaNew,       // the current step's new keys (feasign_find)
  kMetaInserted,  // DynamicCounters, cumulative
  kMetaAdmitted,
  kMetaEvicted,
  kMetaDropped,
  kMetaDeleted,
  kMetaTombstones,  // erased buckets since the last rebuild
  kFeasignMetaWords
};

struct FeasignStore {
  int64_t capacity = 0, mask = 0;  // mask + 1 buckets (key_index_buckets(capacity))
  uint64_t* bucket_keys = nullptr;
  int64_t* bucket_slots = nullptr;
  uint64_t* slot_keys = nullptr;
  uint8_t* flags = nullptr;
  float *show = nullptr, *click = nullptr, *delta = nullptr;
  int32_t* unseen = nullptr;
  int64_t* free_slots = nullptr;
  int64_t* meta = nullptr;
};
inline uint64_t launch_hash(const FeasignStore& s) {
  return LaunchRecorder::hash_fields(s.capacity, s.mask, s.bucket_keys, s.bucket_slots, s.slot_keys,
                                     s.flags, s.show, s.click, s.delta, s.unseen, s.free_slots,
                                     s.meta);
}

/// The accessor's rules (AccessorConfig), as kernel arguments.
struct FeasignRules {
  float nonclk_coeff = 0.1f, click_coeff = 1, embedx_threshold = 10;
  float decay = 0.98f, delete_threshold = 0.8f;
  int64_t delete_after_unseen_days = 30;
};
inline uint64_t launch_hash(const FeasignRules& r) {
  return LaunchRecorder::hash_fields(r.nonclk_coeff, r.click_coeff, r.embedx_threshold, r.decay,
                                     r.delete_threshold, r.delete_after_unseen_days);
}

/// A table's rows and optimizer state (ctx memory): lr (capacity), its state lr_s0 (adagrad's
/// accumulator or adam's m) and lr_s1 (adam's v, else nullptr); embedx (capacity, dim) and its
/// state: adagrad x_s0 (capacity, one accumulator per row), adam x_s0, x_s1 (capacity, dim).
/// A new feasign's rows start at 0 and its accumulators at acc0.
template <class T>
struct FeasignRows {
  int64_t dim = 0;
  bool adam = false;
  T acc0 = 0;
  T *lr = nullptr, *lr_s0 = nullptr, *lr_s1 = nullptr;
  T *embedx = nullptr, *x_s0 = nullptr, *x_s1 = nullptr;
};
/// A new feasign in `slot` (its bucket claimed by the caller): held, not admitted, fresh
/// statistics, rows at 0 and accumulators at acc0. Host and device (the CPU reference and the
/// CUDA kernel place feasigns alike).
template <class T>
LOCKSTEP_HD void start_feasign(const FeasignStore& s, const FeasignRows<T>& r, int64_t slot,
                               uint64_t key) {
  s.slot_keys[slot] = key;
  s.flags[slot] = kFeasignHeld;
  s.show[slot] = s.click[slot] = s.delta[slot] = 0.0f;
  s.unseen[slot] = 0;
  r.lr[slot] = T(0);
  r.lr_s0[slot] = r.acc0;
  if (r.lr_s1) r.lr_s1[slot] = T(0);
  for (int64_t d = 0; d < r.dim; ++d) r.embedx[slot * r.dim + d] = T(0);
  if (r.adam) {
    for (int64_t d = 0; d < r.dim; ++d) r.x_s0[slot * r.dim + d] = r.x_s1[slot * r.dim + d] = T(0);
  } else {
    r.x_s0[slot] = r.acc0;
  }
}

template <class T>
uint64_t launch_hash(const FeasignRows<T>& r) {
  return LaunchRecorder::hash_fields(r.dim, r.adam, r.acc0, r.lr, r.lr_s0, r.lr_s1, r.embedx,
                                     r.x_s0, r.x_s1);
}

/// How a step's records update the rows: record i is records[i * width ..] = [show, click,
/// d lr, d embedx (dim)]; a feasign admitted now starts from feasign_init_value(seed, stream,
/// key, d, init_scale) (lockstep/embedding/feasign_init.h).
struct FeasignRecords {
  int64_t width = 0;
  uint64_t seed = 0, stream = 0;
  float init_scale = 0;
};
inline uint64_t launch_hash(const FeasignRecords& r) {
  return LaunchRecorder::hash_fields(r.width, r.seed, r.stream, r.init_scale);
}

// An empty store: no bucket holds a key, free_slots = 0, 1, .., capacity - 1, meta all 0, flags
// and statistics 0.
LOCKSTEP_KERNEL_IMPLS(feasign_clear, const Context& ctx, const FeasignStore& store)
// For i < *count (<= n_max) of a step's distinct keys: slots[i] = the key's slot or -1 when
// new; a held key's slot gets kFeasignInStep; rank[i] = the number of new keys before i;
// meta[kMetaNew] = the number of new keys.
LOCKSTEP_KERNEL_IMPLS(feasign_find, const Context& ctx, const FeasignStore& store, int64_t n_max,
                      const int64_t* count, const uint64_t* keys, int64_t* slots, int64_t* rank)
// Evicts the `need` held feasigns without kFeasignInStep of the lowest score (ties: the smaller
// key first), fewer when fewer are held; counts them (kMetaEvicted) and rebuilds free_slots.
LOCKSTEP_KERNEL_IMPLS(feasign_evict, const Context& ctx, const FeasignStore& store,
                      const FeasignRules& rules, int64_t need)
// For i < *count with slots[i] < 0 (new): the key takes free_slots[head + rank[i]] when that
// is within the free slots (else it is dropped: slots[i] stays -1), its statistics and rows
// start afresh, and it enters the buckets. Then head, size, kMetaInserted and kMetaDropped.
LOCKSTEP_KERNEL_IMPLS(feasign_place, const Context& ctx, const FeasignStore& store,
                      const FeasignRows<T>& rows, int64_t n_max, const int64_t* count,
                      const uint64_t* keys, int64_t* slots, const int64_t* rank)
// For i < *count with slots[i] >= 0: kFeasignInStep cleared; show, click, delta_score grow by
// the record's counts and the feasign is seen; its lr weight joins the lr list (lr_ids, lr_grads:
// slot and d lr); a feasign admitted before joins the embedx list (x_ids, x_grads: slot and
// d embedx); one whose score now reaches embedx_threshold is admitted and its embedx row
// initialised. lists[0], lists[1] = the lists' lengths (their order is unspecified: each row is
// updated independently). kMetaAdmitted counts admissions.
LOCKSTEP_KERNEL_IMPLS(feasign_count, const Context& ctx, const FeasignStore& store,
                      const FeasignRules& rules, const FeasignRows<T>& rows,
                      const FeasignRecords& rec, int64_t n_max, const int64_t* count,
                      const uint64_t* keys, const int64_t* slots, const T* records,
                      uint64_t* lr_ids, T* lr_grads, uint64_t* x_ids, T* x_grads, int64_t* lists)
// The forward's indices of n keys: index[i] = the key's slot when held and admitted, else -1
// (its embedx row reads as zeros); index[n + i] = its slot when held, else -1. count: the keys
// given (one int64 in ctx's memory, <= n; both indices -1 past it), or nullptr: n.
LOCKSTEP_KERNEL_IMPLS(feasign_gather_index, const Context& ctx, const FeasignStore& store,
                      int64_t n, const int64_t* count, const uint64_t* keys, int64_t* index)
// A boundary: every held feasign's show and click decay; unseen_days = 0 when seen since the
// last boundary, else + 1; seen cleared; a feasign with score < delete_threshold or unseen_days
// > delete_after_unseen_days is deleted (kMetaDeleted). free_slots is rebuilt.
LOCKSTEP_KERNEL_IMPLS(feasign_shrink, const Context& ctx, const FeasignStore& store,
                      const FeasignRules& rules)
// The buckets rebuilt from the held slots (slot_keys where kFeasignHeld), no tombstones;
// free_slots rebuilt; size recounted. For a store whose slot arrays were written directly.
LOCKSTEP_KERNEL_IMPLS(feasign_rebuild, const Context& ctx, const FeasignStore& store)
// After a successful save: delta_score = 0 for every held feasign with score >= base_threshold
// (a base) or for those that are also in the delta (delta_threshold, delta_keep_days).
LOCKSTEP_KERNEL_IMPLS(feasign_mark_saved, const Context& ctx, const FeasignStore& store,
                      const FeasignRules& rules, float base_threshold, float delta_threshold,
                      int64_t delta_keep_days, bool delta)

template <class T>
void feasign_clear(const Context& ctx, const FeasignStore& store) {
  LOCKSTEP_DISPATCH(T, ctx, feasign_clear, store);
}
template <class T>
void feasign_find(const Context& ctx, const FeasignStore& store, int64_t n_max,
                  const int64_t* count, const uint64_t* keys, int64_t* slots, int64_t* rank) {
  detail::check_size("feasign_find", "n_max", n_max);
  if (n_max > 0) LOCKSTEP_DISPATCH(T, ctx, feasign_find, store, n_max, count, keys, slots, rank);
}
template <class T>
void feasign_evict(const Context& ctx, const FeasignStore& store, const FeasignRules& rules,
                   int64_t need) {
  detail::check_size("feasign_evict", "need", need);
  if (need > 0) LOCKSTEP_DISPATCH(T, ctx, feasign_evict, store, rules, need);
}
template <class T>
void feasign_place(const Context& ctx, const FeasignStore& store, const FeasignRows<T>& rows,
                   int64_t n_max, const int64_t* count, const uint64_t* keys, int64_t* slots,
                   const int64_t* rank) {
  detail::check_size("feasign_place", "n_max", n_max);
  if (n_max > 0)
    LOCKSTEP_DISPATCH(T, ctx, feasign_place, store, rows, n_max, count, keys, slots, rank);
}
template <class T>
void feasign_count(const Context& ctx, const FeasignStore& store, const FeasignRules& rules,
                   const FeasignRows<T>& rows, const FeasignRecords& rec, int64_t n_max,
                   const int64_t* count, const uint64_t* keys, const int64_t* slots,
                   const T* records, uint64_t* lr_ids, T* lr_grads, uint64_t* x_ids, T* x_grads,
                   int64_t* lists) {
  detail::check_size("feasign_count", "n_max", n_max);
  LOCKSTEP_DISPATCH(T, ctx, feasign_count, store, rules, rows, rec, n_max, count, keys, slots,
                    records, lr_ids, lr_grads, x_ids, x_grads, lists);
}
template <class T>
void feasign_gather_index(const Context& ctx, const FeasignStore& store, int64_t n,
                          const int64_t* count, const uint64_t* keys, int64_t* index) {
  detail::check_size("feasign_gather_index", "n", n);
  if (n > 0) LOCKSTEP_DISPATCH(T, ctx, feasign_gather_index, store, n, count, keys, index);
}
template <class T>
void feasign_shrink(const Context& ctx, const FeasignStore& store, const FeasignRules& rules) {
  LOCKSTEP_DISPATCH(T, ctx, feasign_shrink, store, rules);
}
template <class T>
void feasign_rebuild(const Context& ctx, const FeasignStore& store) {
  LOCKSTEP_DISPATCH(T, ctx, feasign_rebuild, store);
}
template <class T>
void feasign_mark_saved(const Context& ctx, const FeasignStore& store, const FeasignRules& rules,
                        float base_threshold, float delta_threshold, int64_t delta_keep_days,
                        bool delta) {
  LOCKSTEP_DISPATCH(T, ctx, feasign_mark_saved, store, rules, base_threshold, delta_threshold,
                    delta_keep_days, delta);
}

}  // namespace lockstep::kernels

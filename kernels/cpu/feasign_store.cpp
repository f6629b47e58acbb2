// CPU reference of a dynamic table's decisions (kernels/feasign_store.h): plain loops, keys in
// record order, slots in ascending order. The CUDA kernels reach the same store.
#include "kernels/feasign_store.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::kernels::cpu {

namespace {
// -ffp-contract=off: no fused multiply-add, as the CUDA side's __fmul_rn / __fadd_rn.
float score(const FeasignRules& r, float show, float click) {
  return (show - click) * r.nonclk_coeff + click * r.click_coeff;
}

int64_t find_slot(const FeasignStore& s, uint64_t key) {
  return key_index_probe(s.bucket_keys, s.bucket_slots, static_cast<uint64_t>(s.mask), key);
}

void insert_key(const FeasignStore& s, uint64_t key, int64_t slot) {
  const auto m = static_cast<uint64_t>(s.mask);
  uint64_t b = key_home(key) & m;
  for (uint64_t probes = 0; s.bucket_slots[b] >= 0; ++probes, b = (b + 1) & m)
    LOCKSTEP_CHECK(probes < m, "feasign store: no free bucket for key {}", key);
  s.bucket_keys[b] = key;
  s.bucket_slots[b] = slot;
}

// Frees a held slot: its bucket becomes a tombstone.
void erase_slot(const FeasignStore& s, int64_t slot) {
  const uint64_t key = s.slot_keys[slot];
  const auto m = static_cast<uint64_t>(s.mask);
  uint64_t b = key_home(key) & m;
  for (uint64_t probes = 0; probes <= m; ++probes, b = (b + 1) & m) {
    if (s.bucket_slots[b] == kEmptyBucket) break;
    if (s.bucket_slots[b] == slot) {
      s.bucket_slots[b] = kErasedBucket;
      break;
    }
  }
  s.flags[slot] = 0;
  --s.meta[kMetaSize];
  ++s.meta[kMetaTombstones];
}

void rebuild_free_slots(const FeasignStore& s) {
  int64_t j = 0;
  for (int64_t slot = 0; slot < s.capacity; ++slot)
    if (!(s.flags[slot] & kFeasignHeld)) s.free_slots[j++] = slot;
  s.meta[kMetaHead] = 0;
}

}  // namespace

template <class T>
void feasign_clear(const Context&, const FeasignStore& s) {
  std::fill(s.bucket_slots, s.bucket_slots + s.mask + 1, kEmptyBucket);
  std::fill(s.bucket_keys, s.bucket_keys + s.mask + 1, uint64_t{0});
  std::fill(s.slot_keys, s.slot_keys + s.capacity, uint64_t{0});
  std::fill(s.flags, s.flags + s.capacity, uint8_t{0});
  for (float* v : {s.show, s.click, s.delta}) std::fill(v, v + s.capacity, 0.0f);
  std::fill(s.unseen, s.unseen + s.capacity, 0);
  for (int64_t i = 0; i < s.capacity; ++i) s.free_slots[i] = i;
  std::fill(s.meta, s.meta + kFeasignMetaWords, int64_t{0});
}

template <class T>
void feasign_find(const Context& ctx, const FeasignStore& s, int64_t n_max, const int64_t* count,
                  const uint64_t* keys, int64_t* slots, int64_t* rank) {
  const int64_t n = std::min(*count, n_max);
  parallel_for(ctx, n, grain_for(64), [&](int64_t begin, int64_t end) {  // lookups only
    for (int64_t i = begin; i < end; ++i) slots[i] = find_slot(s, keys[i]);
  });
  int64_t fresh = 0;
  for (int64_t i = 0; i < n; ++i) {
    rank[i] = fresh;
    if (slots[i] >= 0)
      s.flags[slots[i]] |= kFeasignInStep;
    else
      ++fresh;
  }
  s.meta[kMetaNew] = fresh;
}

template <class T>
void feasign_evict(const Context&, const FeasignStore& s, const FeasignRules& rules, int64_t need) {
  thread_local std::vector<int64_t> candidates;  // kept: a steady-state step allocates nothing
  candidates.clear();
  for (int64_t slot = 0; slot < s.capacity; ++slot)
    if ((s.flags[slot] & (kFeasignHeld | kFeasignInStep)) == kFeasignHeld)
      candidates.push_back(slot);
  const auto n = static_cast<ptrdiff_t>(std::min<int64_t>(need, candidates.size()));
  if (n == 0) return;
  const auto lower = [&](int64_t a, int64_t b) {
    const float sa = score(rules, s.show[a], s.click[a]), sb = score(rules, s.show[b], s.click[b]);
    return sa != sb ? sa < sb : s.slot_keys[a] < s.slot_keys[b];
  };
  std::nth_element(candidates.begin(), candidates.begin() + (n - 1), candidates.end(), lower);
  for (ptrdiff_t i = 0; i < n; ++i) erase_slot(s, candidates[static_cast<size_t>(i)]);
  s.meta[kMetaEvicted] += n;
  rebuild_free_slots(s);
}

template <class T>
void feasign_place(const Context&, const FeasignStore& s, const FeasignRows<T>& rows, int64_t n_max,
                   const int64_t* count, const uint64_t* keys, int64_t* slots,
                   const int64_t* rank) {
  const int64_t n = std::min(*count, n_max), avail = s.capacity - s.meta[kMetaSize];
  const int64_t head = s.meta[kMetaHead];
  int64_t placed = 0, dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (slots[i] >= 0) continue;
    if (rank[i] >= avail) {
      ++dropped;
      continue;
    }
    const int64_t slot = s.free_slots[head + rank[i]];
    insert_key(s, keys[i], slot);
    start_feasign(s, rows, slot, keys[i]);
    slots[i] = slot;
    ++placed;
  }
  s.meta[kMetaHead] += placed;
  s.meta[kMetaSize] += placed;
  s.meta[kMetaInserted] += placed;
  s.meta[kMetaDropped] += dropped;
}

template <class T>
void feasign_count(const Context&, const FeasignStore& s, const FeasignRules& rules,
                   const FeasignRows<T>& rows, const FeasignRecords& rec, int64_t n_max,
                   const int64_t* count, const uint64_t* keys, const int64_t* slots,
                   const T* records, uint64_t* lr_ids, T* lr_grads, uint64_t* x_ids, T* x_grads,
                   int64_t* lists) {
  const int64_t n = std::min(*count, n_max), dim = rows.dim;
  int64_t nl = 0, nx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots[i];
    if (slot < 0) continue;
    const T* r = records + i * rec.width;
    const auto shows = static_cast<float>(r[0]), clicks = static_cast<float>(r[1]);
    s.show[slot] += shows;
    s.click[slot] += clicks;
    s.delta[slot] += score(rules, shows, clicks);
    s.flags[slot] = static_cast<uint8_t>((s.flags[slot] & ~kFeasignInStep) | kFeasignSeen);
    lr_ids[nl] = static_cast<uint64_t>(slot);
    lr_grads[nl++] = r[2];
    if (s.flags[slot] & kFeasignAdmitted) {
      x_ids[nx] = static_cast<uint64_t>(slot);
      std::copy(r + 3, r + 3 + dim, x_grads + nx * dim);
      ++nx;
    } else if (score(rules, s.show[slot], s.click[slot]) >= rules.embedx_threshold) {
      s.flags[slot] |= kFeasignAdmitted;
      ++s.meta[kMetaAdmitted];
      for (int64_t d = 0; d < dim; ++d)
        rows.embedx[slot * dim + d] = static_cast<T>(
            embedding::feasign_init_value(rec.seed, rec.stream, keys[i], d, rec.init_scale));
    }
  }
  lists[0] = nl;
  lists[1] = nx;
}

template <class T>
void feasign_gather_index(const Context& ctx, const FeasignStore& s, int64_t n,
                          const int64_t* count, const uint64_t* keys, int64_t* index) {
  const int64_t given = count ? *count : n;
  parallel_for(ctx, n, grain_for(64), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t slot = i < given ? find_slot(s, keys[i]) : -1;
      index[i] = slot >= 0 && (s.flags[slot] & kFeasignAdmitted) ? slot : -1;
      index[n + i] = slot;
    }
  });
}

template <class T>
void feasign_shrink(const Context&, const FeasignStore& s, const FeasignRules& rules) {
  int64_t deleted = 0;
  for (int64_t slot = 0; slot < s.capacity; ++slot) {
    if (!(s.flags[slot] & kFeasignHeld)) continue;
    s.show[slot] *= rules.decay;
    s.click[slot] *= rules.decay;
    s.unseen[slot] = (s.flags[slot] & kFeasignSeen) ? 0 : s.unseen[slot] + 1;
    s.flags[slot] &= static_cast<uint8_t>(~kFeasignSeen);
    if (score(rules, s.show[slot], s.click[slot]) < rules.delete_threshold ||
        s.unseen[slot] > rules.delete_after_unseen_days) {
      erase_slot(s, slot);
      ++deleted;
    }
  }
  s.meta[kMetaDeleted] += deleted;
  rebuild_free_slots(s);
}

template <class T>
void feasign_rebuild(const Context&, const FeasignStore& s) {
  std::fill(s.bucket_slots, s.bucket_slots + s.mask + 1, kEmptyBucket);
  int64_t size = 0;
  for (int64_t slot = 0; slot < s.capacity; ++slot) {
    if (!(s.flags[slot] & kFeasignHeld)) continue;
    insert_key(s, s.slot_keys[slot], slot);
    ++size;
  }
  s.meta[kMetaSize] = size;
  s.meta[kMetaTombstones] = 0;
  rebuild_free_slots(s);
}

template <class T>
void feasign_mark_saved(const Context&, const FeasignStore& s, const FeasignRules& rules,
                        float base_threshold, float delta_threshold, int64_t delta_keep_days,
                        bool delta) {
  for (int64_t slot = 0; slot < s.capacity; ++slot) {
    if (!(s.flags[slot] & kFeasignHeld) ||
        score(rules, s.show[slot], s.click[slot]) < base_threshold)
      continue;
    if (delta && (s.delta[slot] < delta_threshold || s.unseen[slot] > delta_keep_days)) continue;
    s.delta[slot] = 0.0f;
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                                                 \
  template void feasign_clear<T>(const Context&, const FeasignStore&);                          \
  template void feasign_find<T>(const Context&, const FeasignStore&, int64_t, const int64_t*,   \
                                const uint64_t*, int64_t*, int64_t*);                           \
  template void feasign_evict<T>(const Context&, const FeasignStore&, const FeasignRules&,      \
                                 int64_t);                                                      \
  template void feasign_place<T>(const Context&, const FeasignStore&, const FeasignRows<T>&,    \
                                 int64_t, const int64_t*, const uint64_t*, int64_t*,            \
                                 const int64_t*);                                               \
  template void feasign_count<T>(const Context&, const FeasignStore&, const FeasignRules&,      \
                                 const FeasignRows<T>&, const FeasignRecords&, int64_t,         \
                                 const int64_t*, const uint64_t*, const int64_t*, const T*,     \
                                 uint64_t*, T*, uint64_t*, T*, int64_t*);                       \
  template void feasign_gather_index<T>(const Context&, const FeasignStore&, int64_t,           \
                                        const int64_t*, const uint64_t*, int64_t*);             \
  template void feasign_shrink<T>(const Context&, const FeasignStore&, const FeasignRules&);    \
  template void feasign_rebuild<T>(const Context&, const FeasignStore&);                        \
  template void feasign_mark_saved<T>(const Context&, const FeasignStore&, const FeasignRules&, \
                                      float, float, int64_t, bool);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

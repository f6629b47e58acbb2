// CPU reference of the device key index (kernels/key_index.h): the same probes, one key at a
// time in order.
#include "kernels/key_index.h"

#include "kernels/input_errors.h"

namespace lockstep::kernels::cpu {

template <class T>
void key_index_find(const Context&, const uint64_t* bucket_keys, const int64_t* bucket_slots,
                    int64_t mask, int64_t n, const uint64_t* keys, int64_t* slots) {
  for (int64_t i = 0; i < n; ++i)
    slots[i] = key_index_probe(bucket_keys, bucket_slots, static_cast<uint64_t>(mask), keys[i]);
}

template <class T>
void key_index_insert(const Context&, uint64_t* bucket_keys, int64_t* bucket_slots, int64_t mask,
                      int64_t n, const uint64_t* keys, const int64_t* slots) {
  const auto m = static_cast<uint64_t>(mask);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t b = key_home(keys[i]) & m;
    uint64_t probes = 0;
    while (bucket_slots[b] >= 0) {  // the first free bucket (empty or a tombstone)
      if (++probes > m) throw Error(index_full_message("key_index_insert", i, keys[i]));
      b = (b + 1) & m;
    }
    bucket_keys[b] = keys[i];
    bucket_slots[b] = slots[i];
  }
}

template <class T>
void key_index_erase(const Context& ctx, const uint64_t* bucket_keys, int64_t* bucket_slots,
                     int64_t mask, int64_t n, const uint64_t* keys) {
  const auto m = static_cast<uint64_t>(mask);
  (void)ctx;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t b = key_home(keys[i]) & m;
    for (uint64_t probes = 0; probes <= m; ++probes, b = (b + 1) & m) {
      const int64_t s = bucket_slots[b];
      if (s == kEmptyBucket) break;
      if (s >= 0 && bucket_keys[b] == keys[i]) {
        bucket_slots[b] = kErasedBucket;
        break;
      }
    }
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                                                  \
  template void key_index_find<T>(const Context&, const uint64_t*, const int64_t*, int64_t,       \
                                  int64_t, const uint64_t*, int64_t*);                          \
  template void key_index_insert<T>(const Context&, uint64_t*, int64_t*, int64_t, int64_t,        \
                                    const uint64_t*, const int64_t*);                           \
  template void key_index_erase<T>(const Context&, const uint64_t*, int64_t*, int64_t, int64_t,   \
                                   const uint64_t*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

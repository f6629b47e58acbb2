#include "lockstep/embedding/device_key_index.h"

#include "kernels/key_index.h"
#include "lockstep/core/error.h"

namespace lockstep::embedding {

DeviceKeyIndex::DeviceKeyIndex(const Context& ctx, int64_t capacity) : capacity_(capacity) {
  LOCKSTEP_CHECK(capacity >= 1 && capacity <= (int64_t{1} << 40),
                 "device key index capacity {} is out of range: must be in [1, 1099511627776]",
                 capacity);
  const int64_t buckets = kernels::key_index_buckets(capacity);
  mask_ = buckets - 1;
  bucket_keys_.resize(ctx, {buckets});
  bucket_slots_.resize(ctx, {buckets});
  zero_bytes(ctx, bucket_keys_.data(), bucket_keys_.bytes());
  clear_buckets(ctx);
  slot_used_.assign(static_cast<size_t>(capacity), 0);
  host_keys_.assign(static_cast<size_t>(capacity), 0);
}

void DeviceKeyIndex::find(const Context& ctx, const uint64_t* keys, int64_t n,
                          int64_t* slots) const {
  kernels::key_index_find(ctx, bucket_keys_.data(), bucket_slots_.data(), mask_, n, keys, slots);
}

void DeviceKeyIndex::insert_new(const Context& ctx, const uint64_t* keys, int64_t n,
                                int64_t* slots) {
  LOCKSTEP_CHECK(n >= 0 && n <= capacity_ - size_,
                 "device key index: {} new keys, and room for {} (capacity {})", n,
                 capacity_ - size_, capacity_);
  if (n == 0) return;
  // The n lowest free slots, in order (as KeyIndex::insert hands them out one by one).
  const std::vector<uint64_t> k = to_host(ctx, keys, n);
  std::vector<int64_t> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (!free_.empty()) {
      s[i] = free_.top();
      free_.pop();
    } else {
      s[i] = next_fresh_++;
    }
    slot_used_[static_cast<size_t>(s[i])] = 1;
    host_keys_[static_cast<size_t>(s[i])] = k[static_cast<size_t>(i)];
  }
  size_ += n;
  copy_bytes(ctx, slots, ctx.device(), s.data(), Device::cpu(), s.size() * sizeof(int64_t));
  kernels::key_index_insert(ctx, bucket_keys_.data(), bucket_slots_.data(), mask_, n, keys, slots);
}

int64_t DeviceKeyIndex::erase(const Context& ctx, const uint64_t* keys, int64_t n) {
  if (n <= 0) return 0;
  scratch_.resize(ctx, {n});
  find(ctx, keys, n, scratch_.data());
  const std::vector<int64_t> s = to_host(ctx, scratch_.data(), n);  // one read per erase call
  int64_t held = 0;
  for (int64_t slot : s) {
    // Not held, or a key named twice in this call: its slot is freed once.
    if (slot < 0 || !slot_used_[static_cast<size_t>(slot)]) continue;
    slot_used_[static_cast<size_t>(slot)] = 0;
    free_.push(slot);
    ++held;
  }
  size_ -= held;
  kernels::key_index_erase(ctx, bucket_keys_.data(), bucket_slots_.data(), mask_, n, keys);
  tombstones_ += held;
  if (tombstones_ * 4 > mask_ + 1) rebuild(ctx);
  return held;
}

// Every bucket empty: kEmptyBucket (-1) is all one bits, so a memset on the device's stream
// (not a host array of the bucket count uploaded).
void DeviceKeyIndex::clear_buckets(const Context& ctx) {
  static_assert(kernels::kEmptyBucket == -1, "an empty bucket is all one bits");
  fill_bytes(ctx, bucket_slots_.data(), 0xFF, bucket_slots_.bytes());
}

// Clears the tombstones: an empty bucket array, then every held key inserted again (one upload,
// one kernel). The key -> slot map does not change.
void DeviceKeyIndex::rebuild(const Context& ctx) {
  std::vector<uint64_t> keys;
  std::vector<int64_t> slots;
  for (int64_t s = 0; s < capacity_; ++s)
    if (slot_used_[static_cast<size_t>(s)]) {
      keys.push_back(host_keys_[static_cast<size_t>(s)]);
      slots.push_back(s);
    }
  clear_buckets(ctx);
  tombstones_ = 0;
  if (keys.empty()) return;
  const auto dk = make_tensor(ctx, keys);
  const auto ds = make_tensor(ctx, slots);
  kernels::key_index_insert(ctx, bucket_keys_.data(), bucket_slots_.data(), mask_,
                            static_cast<int64_t>(keys.size()), dk.data(), ds.data());
}

}  // namespace lockstep::embedding

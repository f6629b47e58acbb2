#include "lockstep/embedding/key_index.h"

#include "kernels/key_index.h"  // key_home, key_index_buckets: the device index's too
#include "lockstep/core/error.h"

namespace lockstep::embedding {


KeyIndex::KeyIndex(int64_t capacity) : capacity_(capacity) {
  LOCKSTEP_CHECK(capacity >= 1 && capacity <= (int64_t{1} << 40),
                 "key index capacity {} is out of range: must be in [1, 1099511627776]", capacity);
  const auto buckets = static_cast<size_t>(kernels::key_index_buckets(capacity));
  mask_ = buckets - 1;
  bucket_keys_.assign(buckets, 0);
  bucket_slots_.assign(buckets, -1);
  slot_keys_.assign(static_cast<size_t>(capacity), 0);
  slot_used_.assign(static_cast<size_t>(capacity), 0);
}

size_t KeyIndex::home(uint64_t key) const { return static_cast<size_t>(kernels::key_home(key)) & mask_; }

size_t KeyIndex::bucket_of(uint64_t key) const {
  // The load factor is at most 1/2: an empty bucket always ends the probe.
  size_t b = home(key);
  while (bucket_slots_[b] >= 0 && bucket_keys_[b] != key) b = (b + 1) & mask_;
  return b;
}

int64_t KeyIndex::find(uint64_t key) const { return bucket_slots_[bucket_of(key)]; }

int64_t KeyIndex::insert(uint64_t key, bool* inserted) {
  const size_t b = bucket_of(key);
  if (inserted) *inserted = false;
  if (bucket_slots_[b] >= 0) return bucket_slots_[b];
  if (full()) return -1;
  int64_t slot;
  if (!free_.empty()) {
    slot = free_.top();  // every free slot below next_fresh_: the lowest free slot
    free_.pop();
  } else {
    slot = next_fresh_++;
  }
  bucket_keys_[b] = key;
  bucket_slots_[b] = slot;
  slot_keys_[static_cast<size_t>(slot)] = key;
  slot_used_[static_cast<size_t>(slot)] = 1;
  ++size_;
  if (inserted) *inserted = true;
  return slot;
}

bool KeyIndex::erase(uint64_t key) {
  size_t hole = bucket_of(key);
  const int64_t slot = bucket_slots_[hole];
  if (slot < 0) return false;
  slot_used_[static_cast<size_t>(slot)] = 0;
  free_.push(slot);
  --size_;
  // Backward-shift deletion: move later members of the probe run into the hole when the hole
  // lies on their way from their home bucket, until an empty bucket ends the run.
  bucket_slots_[hole] = -1;
  for (size_t b = (hole + 1) & mask_; bucket_slots_[b] >= 0; b = (b + 1) & mask_) {
    const size_t h = home(bucket_keys_[b]);
    // Can the entry at b move to the hole? Only if h is not cyclically in (hole, b].
    const bool h_after_hole = ((b - h) & mask_) < ((b - hole) & mask_);
    if (h_after_hole) continue;
    bucket_keys_[hole] = bucket_keys_[b];
    bucket_slots_[hole] = bucket_slots_[b];
    bucket_slots_[b] = -1;
    hole = b;
  }
  return true;
}

void KeyIndex::clear() {
  bucket_slots_.assign(bucket_slots_.size(), -1);
  slot_used_.assign(slot_used_.size(), 0);
  free_ = {};
  next_fresh_ = 0;
  size_ = 0;
}

void KeyIndex::restore(const uint64_t* slot_keys, const uint8_t* used) {
  clear();
  for (int64_t s = 0; s < capacity_; ++s) {
    if (!used[s]) continue;
    const size_t b = bucket_of(slot_keys[s]);
    LOCKSTEP_CHECK(bucket_slots_[b] < 0, "key index: key {} is held by slots {} and {}",
                   slot_keys[s], bucket_slots_[b], s);
    bucket_keys_[b] = slot_keys[s];
    bucket_slots_[b] = s;
    slot_keys_[static_cast<size_t>(s)] = slot_keys[s];
    slot_used_[static_cast<size_t>(s)] = 1;
    ++size_;
    next_fresh_ = s + 1;
  }
  for (int64_t s = 0; s < next_fresh_; ++s)
    if (!used[s]) free_.push(s);
}

}  // namespace lockstep::embedding

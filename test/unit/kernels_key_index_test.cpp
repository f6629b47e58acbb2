// The CPU reference of the device key index (kernels/key_index.h) against std::unordered_map:
// inserts with caller-chosen slots, finds of held and absent keys, erases (tombstones) and
// inserts into them, keys 0 and 2^64 - 1, the bucket array at load 1/2.
#include <catch2/catch.hpp>

#include <limits>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "kernels/key_index.h"

using namespace lockstep;

TEST_CASE("Device key index, CPU reference: find / insert / erase against unordered_map",
          "[kernels][key_index]") {
  Context ctx;
  const int64_t buckets = 1 << 14, mask = buckets - 1, capacity = buckets / 2;
  std::vector<uint64_t> bucket_keys(buckets, 0);
  std::vector<int64_t> bucket_slots(buckets, kernels::kEmptyBucket);
  std::unordered_map<uint64_t, int64_t> ref;
  std::mt19937_64 rng(21);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  int64_t next_slot = 0;
  std::vector<int64_t> free_slots;
  for (int round = 0; round < 60; ++round) {
    // Insert a batch of new distinct keys (0 and 2^64 - 1 among the first).
    std::vector<uint64_t> keys;
    std::unordered_set<uint64_t> batch;
    while (static_cast<int64_t>(keys.size()) < 200 &&
           static_cast<int64_t>(ref.size() + keys.size()) < capacity) {
      uint64_t k = round == 0 && keys.size() < 2 ? (keys.empty() ? 0 : max) : rng() % 50000;
      if (ref.count(k) || !batch.insert(k).second) continue;
      keys.push_back(k);
    }
    std::vector<int64_t> slots;
    for (size_t i = 0; i < keys.size(); ++i) {
      int64_t s = next_slot;
      if (!free_slots.empty()) {
        s = free_slots.back();
        free_slots.pop_back();
      } else {
        ++next_slot;
      }
      slots.push_back(s);
      ref[keys[i]] = s;
    }
    kernels::key_index_insert(ctx, bucket_keys.data(), bucket_slots.data(), mask,
                              static_cast<int64_t>(keys.size()), keys.data(), slots.data());
    // Erase a sixth of the held keys, and an absent one (ignored).
    std::vector<uint64_t> gone;
    for (const auto& [k, s] : ref)
      if (rng() % 6 == 0) gone.push_back(k);
    for (uint64_t k : gone) {
      free_slots.push_back(ref.at(k));
      ref.erase(k);
    }
    gone.push_back(60000 + static_cast<uint64_t>(round));
    kernels::key_index_erase(ctx, bucket_keys.data(), bucket_slots.data(), mask,
                             static_cast<int64_t>(gone.size()), gone.data());
    // Find: every held key, the erased ones and absent ones.
    std::vector<uint64_t> probe;
    for (const auto& [k, s] : ref) probe.push_back(k);
    probe.insert(probe.end(), gone.begin(), gone.end());
    for (int i = 0; i < 100; ++i) probe.push_back(100000 + rng() % 100000);
    std::vector<int64_t> found(probe.size());
    kernels::key_index_find(ctx, bucket_keys.data(), bucket_slots.data(), mask,
                            static_cast<int64_t>(probe.size()), probe.data(), found.data());
    for (size_t i = 0; i < probe.size(); ++i) {
      const auto it = ref.find(probe[i]);
      REQUIRE(found[i] == (it == ref.end() ? -1 : it->second));
    }
  }
  CHECK(ref.size() > 800);  // the array held many keys at once (steady state ~1000)
  CHECK_THROWS_WITH(kernels::key_index_find(ctx, bucket_keys.data(), bucket_slots.data(), 1000, 0,
                                            nullptr, nullptr),
                    Catch::Matchers::Contains("mask = 1000 is not a power of two minus one"));
}

TEST_CASE("Device key index, CPU reference: a key that finds no free bucket is an error naming it",
          "[kernels][key_index][errors]") {
  Context ctx;
  const int64_t buckets = 4, mask = buckets - 1;
  std::vector<uint64_t> bucket_keys(buckets, 0);
  std::vector<int64_t> bucket_slots(buckets, kernels::kEmptyBucket);
  const std::vector<uint64_t> keys = {7, 8, 9, 10, 11};
  const std::vector<int64_t> slots = {0, 1, 2, 3, 4};
  CHECK_THROWS_WITH(kernels::key_index_insert(ctx, bucket_keys.data(), bucket_slots.data(), mask, 5,
                                              keys.data(), slots.data()),
                    "key_index_insert: no free bucket for keys[4] = 11: the key index is full");
  // The keys before it were inserted and are found.
  std::vector<int64_t> found(4);
  kernels::key_index_find(ctx, bucket_keys.data(), bucket_slots.data(), mask, 4, keys.data(),
                          found.data());
  CHECK(found == std::vector<int64_t>{0, 1, 2, 3});
}

// embedding::KeyIndex, the key -> slot map of a dynamic table (issue 13): against
// std::unordered_map over random inserts and erases, extreme keys, a full index, slot reuse and
// determinism.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "lockstep/embedding/key_index.h"

using lockstep::embedding::KeyIndex;

TEST_CASE("KeyIndex matches a reference map over random inserts and erases", "[embedding][key_index]") {
  // Keys from a small range so that inserts hit existing keys and erases hit held ones; the
  // capacity is below the number the inserts and erases settle at (2/3 of the range), so that
  // the index runs full.
  for (uint64_t range : {uint64_t{50}, uint64_t{5000}}) {
    INFO("keys in [0, " << range << ")");
    const int64_t capacity = static_cast<int64_t>(range / 2);
    KeyIndex index(capacity);
    std::unordered_map<uint64_t, int64_t> ref;
    std::mt19937_64 rng(7);
    int64_t full_refusals = 0;
    for (int op = 0; op < 200000; ++op) {
      const uint64_t key = rng() % range * 0x9e3779b97f4a7c15ULL;  // spread over 64 bits
      if (rng() % 3 != 0) {
        bool inserted = false;
        const int64_t slot = index.insert(key, &inserted);
        const auto it = ref.find(key);
        if (it != ref.end()) {
          REQUIRE(slot == it->second);
          REQUIRE(!inserted);
        } else if (static_cast<int64_t>(ref.size()) == capacity) {
          REQUIRE(slot == -1);
          ++full_refusals;
        } else {
          REQUIRE(inserted);
          REQUIRE(slot >= 0);
          REQUIRE(slot < capacity);
          REQUIRE(!std::any_of(ref.begin(), ref.end(),
                               [&](const auto& kv) { return kv.second == slot; }));
          ref[key] = slot;
        }
      } else {
        REQUIRE(index.erase(key) == (ref.erase(key) == 1));
      }
      REQUIRE(index.size() == static_cast<int64_t>(ref.size()));
      if (op % 1000 == 0)  // every held key is found, at its slot, and the slot knows its key
        for (const auto& [k, s] : ref) {
          REQUIRE(index.find(k) == s);
          REQUIRE(index.key_of(s) == k);
          REQUIRE(index.occupied(s));
        }
    }
    CHECK(full_refusals > 0);
  }
}

TEST_CASE("KeyIndex holds any 64-bit key, 0 and 2^64-1 included", "[embedding][key_index]") {
  KeyIndex index(4);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  CHECK(index.find(0) == -1);
  CHECK(index.find(max) == -1);
  CHECK(index.insert(0) == 0);
  CHECK(index.insert(max) == 1);
  CHECK(index.find(0) == 0);
  CHECK(index.find(max) == 1);
  CHECK(index.key_of(1) == max);
  CHECK(index.erase(0));
  CHECK(index.find(0) == -1);
  CHECK(index.find(max) == 1);
  CHECK_FALSE(index.erase(0));
}

TEST_CASE("KeyIndex: full, the lowest free slot first, clear, and the same calls give the same "
          "slots",
          "[embedding][key_index]") {
  KeyIndex index(3);
  CHECK(index.insert(10) == 0);
  CHECK(index.insert(20) == 1);
  CHECK(index.insert(30) == 2);
  CHECK(index.full());
  bool inserted = true;
  CHECK(index.insert(40, &inserted) == -1);
  CHECK_FALSE(inserted);
  CHECK(index.insert(20, &inserted) == 1);  // held keys are still found when full
  CHECK_FALSE(inserted);
  CHECK(index.erase(10));
  CHECK(index.erase(30));
  CHECK(index.insert(50) == 0);  // the lowest free slot first
  CHECK(index.insert(60) == 2);
  CHECK(index.find(20) == 1);
  index.clear();
  CHECK(index.size() == 0);
  CHECK(index.find(20) == -1);
  CHECK(index.insert(70) == 0);

  // Determinism: two indexes given the same calls hold the same key -> slot map.
  KeyIndex a(1000), b(1000);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t key = rng() % 1500;
    if (rng() % 4 == 0) {
      REQUIRE(a.erase(key) == b.erase(key));
    } else {
      REQUIRE(a.insert(key) == b.insert(key));
    }
  }
  for (int64_t s = 0; s < 1000; ++s) {
    REQUIRE(a.occupied(s) == b.occupied(s));
    if (a.occupied(s)) REQUIRE(a.key_of(s) == b.key_of(s));
  }
  CHECK_THROWS_WITH(KeyIndex(0), Catch::Matchers::Contains("capacity 0 is out of range"));
}

TEST_CASE("KeyIndex: an index restored from its slot -> key map continues as the original",
          "[embedding][key_index]") {
  KeyIndex a(500);
  std::mt19937_64 rng(11);
  const auto churn = [&](KeyIndex& x, KeyIndex* y, int n) {
    for (int i = 0; i < n; ++i) {
      const uint64_t key = rng() % 800;
      if (rng() % 3 == 0) {
        const bool e = x.erase(key);
        if (y) REQUIRE(y->erase(key) == e);
      } else {
        const int64_t s = x.insert(key);
        if (y) REQUIRE(y->insert(key) == s);
      }
    }
  };
  churn(a, nullptr, 5000);
  std::vector<uint64_t> keys(500);
  std::vector<uint8_t> used(500);
  for (int64_t s = 0; s < 500; ++s) {
    used[s] = a.occupied(s) ? 1 : 0;
    keys[s] = used[s] ? a.key_of(s) : 0;
  }
  KeyIndex b(500);
  b.restore(keys.data(), used.data());
  CHECK(b.size() == a.size());
  churn(a, &b, 5000);  // the same calls give the same slots from here on

  keys[0] = 7;
  keys[1] = 7;
  used[0] = used[1] = 1;
  CHECK_THROWS_WITH(b.restore(keys.data(), used.data()),
                    Catch::Matchers::Contains("key 7 is held by slots 0 and 1"));
}

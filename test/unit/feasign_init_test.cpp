// Initial values of dynamic-table feasigns (issue 13): a pure function of (seed, table, key,
// element), in range, different for different keys, tables and seeds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "lockstep/embedding/feasign_init.h"

using lockstep::embedding::feasign_init_value;

namespace {
std::vector<float> row(uint64_t seed, uint64_t table, uint64_t key, int64_t dim, float scale) {
  std::vector<float> r;
  for (int64_t d = 0; d < dim; ++d) r.push_back(feasign_init_value(seed, table, key, d, scale));
  return r;
}
}  // namespace

TEST_CASE("Feasign initial values are a pure function of (seed, table, key, element)",
          "[embedding][feasign]") {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  for (uint64_t key : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, max}) {
    INFO("key " << key);
    const auto a = row(7, 99, key, 16, 0.05f);
    CHECK(a == row(7, 99, key, 16, 0.05f));  // re-created after eviction: the same values
    for (float v : a) {
      CHECK(v >= -0.05f);
      CHECK(v < 0.05f);
    }
    CHECK(a != row(7, 98, key, 16, 0.05f));  // another table
    CHECK(a != row(8, 99, key, 16, 0.05f));  // another seed
  }
  // Distinct keys of one table get distinct rows; the values fill the range.
  std::set<std::vector<float>> rows;
  float lo = 1, hi = -1;
  for (uint64_t key = 0; key < 2000; ++key) {
    const auto r = row(1, 5, key * 0x9e3779b97f4a7c15ULL, 8, 1.0f);
    rows.insert(r);
    for (float v : r) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  CHECK(rows.size() == 2000);
  CHECK(lo < -0.99f);
  CHECK(hi > 0.99f);
  CHECK(feasign_init_value(1, 5, 3, 0, 0.0f) == 0.0f);  // scale 0: zero rows
}

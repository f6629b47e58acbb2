// Key → row hashing on the device (kernels/key_hash.h): xxh64_of_key is the xxHash library's
// XXH64 of the key's 8 little-endian bytes, the kernel is EmbeddingTable::row_of, and staging
// raw keys gives the rows host hashing gave.

#include <xxhash.h>
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/key_hash.h"
#include "lockstep/core/error.h"
#include "lockstep/embedding/embedding_table.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
std::vector<uint64_t> test_keys(size_t n, uint64_t seed) {
  std::vector<uint64_t> keys = {
      0, 1, 2, 255, 256, 0x8000000000000000ULL, std::numeric_limits<uint64_t>::max()};
  std::mt19937_64 rng(seed);
  while (keys.size() < n) keys.push_back(rng());
  return keys;
}
}  // namespace

TEST_CASE("xxh64_of_key is XXH64 of the key's little-endian bytes", "[kernels][embedding]") {
  for (const uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0x9E3779B185EBCA87ULL},
                              std::numeric_limits<uint64_t>::max()})
    for (const uint64_t key : test_keys(2000, seed + 7)) {
      uint8_t le[8];
      for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(key >> (8 * i));
      REQUIRE(kernels::xxh64_of_key(key, seed) == XXH64(le, 8, seed));
    }
}

TEST_CASE("hash_keys_to_rows gives EmbeddingTable::row_of for every key", "[kernels][embedding]") {
  Context ctx;
  for (const int64_t rows : {int64_t{1}, int64_t{7}, int64_t{1000003}, int64_t{1} << 40}) {
    embedding::TableConfig c;
    c.name = "items";
    c.rows = rows;
    c.dim = 4;
    const embedding::EmbeddingTable<float> table(c, nn::OptimizerConfig{});
    REQUIRE(table.hashes_keys());
    const auto keys = test_keys(100000, static_cast<uint64_t>(rows));  // many chunks: threads
    auto ids = keys;
    kernels::hash_keys_to_rows(ctx, static_cast<int64_t>(ids.size()), table.hash_seed(), rows,
                               ids.data());
    for (size_t i = 0; i < keys.size(); ++i) {
      REQUIRE(ids[i] == table.row_of(keys[i]));
      REQUIRE(ids[i] < static_cast<uint64_t>(rows));
    }
  }
  uint64_t id = 5;
  REQUIRE_THROWS_WITH(kernels::hash_keys_to_rows(ctx, 1, 0, 0, &id),
                      Contains("hash_keys_to_rows: rows = 0"));
  REQUIRE_THROWS_WITH(kernels::hash_keys_to_rows(ctx, -1, 0, 3, &id),
                      Contains("hash_keys_to_rows") && Contains("n"));
}

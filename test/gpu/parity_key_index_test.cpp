// The device key index on CUDA against its CPU reference (kernels/key_index.h): the same
// inserts (one thread per key, racing for buckets), erases and finds give the same key -> slot
// answers for held, erased and absent keys, at load 1/2 and with keys 0 and 2^64 - 1.
#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <random>
#include <unordered_set>

#include "gpu_util.h"
#include "kernels/key_hash.h"
#include "kernels/key_index.h"
#include "lockstep/embedding/key_index.h"

using namespace lockstep;

TEST_CASE("CUDA key -> row hashing equals the CPU's, bit for bit", "[gpu][key_index]") {
  test::ParityContexts pc;
  std::mt19937_64 rng(9);
  std::vector<uint64_t> keys = {0, 1, std::numeric_limits<uint64_t>::max()};
  while (keys.size() < (1u << 20)) keys.push_back(rng());
  for (const int64_t rows : {int64_t{1}, int64_t{1000003}, int64_t{1} << 40}) {
    auto cpu = keys;
    kernels::hash_keys_to_rows(pc.cpu, static_cast<int64_t>(cpu.size()), 0x1234, rows,
                               cpu.data());
    auto gpu = test::to_gpu(pc.gpu, keys);
    kernels::hash_keys_to_rows(pc.gpu, static_cast<int64_t>(keys.size()), 0x1234, rows,
                               gpu.data());
    REQUIRE(to_host(pc.gpu, gpu) == cpu);
  }
}

TEST_CASE("Device key index: CUDA = CPU for find after racing inserts and erases",
          "[gpu][key_index]") {
  test::ParityContexts pc;
  const int64_t buckets = 1 << 20, mask = buckets - 1, n = buckets / 2;
  std::mt19937_64 rng(5);
  std::unordered_set<uint64_t> seen;
  std::vector<uint64_t> keys = {0, std::numeric_limits<uint64_t>::max()};
  seen.insert(keys.begin(), keys.end());
  while (static_cast<int64_t>(keys.size()) < n) {
    const uint64_t k = rng() % 4000000;  // collisions of home buckets: long probe runs
    if (seen.insert(k).second) keys.push_back(k);
  }
  std::vector<int64_t> slots(keys.size());
  for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int64_t>(i);
  std::shuffle(slots.begin(), slots.end(), rng);
  std::vector<uint64_t> erased(keys.begin(), keys.begin() + n / 4);
  std::vector<uint64_t> probe = keys;
  for (int i = 0; i < 100000; ++i) probe.push_back(5000000 + rng() % 1000000);  // absent

  std::vector<int64_t> results[2];
  for (int side = 0; side < 2; ++side) {
    const Context& ctx = side == 0 ? pc.cpu : pc.gpu;
    Tensor<uint64_t> bk(ctx, {buckets});
    Tensor<int64_t> bs = make_tensor(ctx, std::vector<int64_t>(buckets, kernels::kEmptyBucket));
    zero_bytes(ctx, bk.data(), bk.bytes());
    auto k = make_tensor(ctx, keys);
    auto s = make_tensor(ctx, slots);
    auto e = make_tensor(ctx, erased);
    auto p = make_tensor(ctx, probe);
    Tensor<int64_t> out(ctx, {static_cast<int64_t>(probe.size())});
    kernels::key_index_insert(ctx, bk.data(), bs.data(), mask, n, k.data(), s.data());
    kernels::key_index_erase(ctx, bk.data(), bs.data(), mask, n / 4, e.data());
    // Re-insert the erased keys with their slots: into tombstones, racing again.
    kernels::key_index_insert(ctx, bk.data(), bs.data(), mask, n / 8, e.data(), s.data());
    kernels::key_index_find(ctx, bk.data(), bs.data(), mask, static_cast<int64_t>(probe.size()),
                            p.data(), out.data());
    results[side] = to_host(ctx, out);
  }
  REQUIRE(results[0] == results[1]);
  // And the expected answers: re-inserted keys their new slots, the other erased keys -1.
  CHECK(results[0][0] == slots[0]);
  CHECK(results[0][n / 8] == -1);
  CHECK(results[0][n / 4] == slots[n / 4]);
  CHECK(results[0].back() == -1);
}

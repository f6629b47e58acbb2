// The CPU reference of a dynamic table's row kernels (kernels/feasign.h) against plain loops,
// and their errors.
#include <catch2/catch.hpp>

#include "kernels/feasign.h"
#include "lockstep/embedding/feasign_init.h"

using namespace lockstep;
using Catch::Matchers::Contains;

TEST_CASE("gather_rows copies indexed rows and zeros for -1", "[kernels][dynamic]") {
  Context ctx;
  const std::vector<float> src = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // 3 rows of 2 in a stride of 3
  const std::vector<int64_t> index = {2, -1, 0};
  std::vector<float> dst(3 * 4, -7.0f);
  kernels::gather_rows<float>(ctx, 3, 2, src.data(), 3, 3, index.data(), dst.data(), 4);
  CHECK(dst == std::vector<float>{7, 8, -7, -7, 0, 0, -7, -7, 1, 2, -7, -7});
  const std::vector<int64_t> bad = {0, 3};
  CHECK_THROWS_WITH(
      kernels::gather_rows<float>(ctx, 2, 2, src.data(), 3, 3, bad.data(), dst.data(), 4),
      Contains("gather_rows: index[1] = 3 is outside [0, 3)"));
}

TEST_CASE("fill_rows and feasign_init_rows write exactly the indexed rows", "[kernels][dynamic]") {
  Context ctx;
  std::vector<float> t(4 * 3, 1.0f);
  const std::vector<int64_t> rows = {3, 1};
  kernels::fill_rows<float>(ctx, 2, 3, rows.data(), 0.5f, t.data(), 3, 4);
  CHECK(t == std::vector<float>{1, 1, 1, 0.5f, 0.5f, 0.5f, 1, 1, 1, 0.5f, 0.5f, 0.5f});
  const std::vector<uint64_t> keys = {0, ~uint64_t{0}};
  kernels::feasign_init_rows<float>(ctx, 2, 3, keys.data(), rows.data(), 7, 9, 0.1f, t.data(), 4);
  for (int d = 0; d < 3; ++d) {
    CHECK(t[3 * 3 + d] == embedding::feasign_init_value(7, 9, 0, d, 0.1f));
    CHECK(t[1 * 3 + d] == embedding::feasign_init_value(7, 9, ~uint64_t{0}, d, 0.1f));
    CHECK(t[d] == 1.0f);
  }
  const std::vector<int64_t> bad = {4};
  CHECK_THROWS_WITH(kernels::fill_rows<float>(ctx, 1, 3, bad.data(), 0.0f, t.data(), 3, 4),
                    Contains("index[0] = 4 is outside [0, 4)"));
  CHECK_THROWS_WITH(kernels::feasign_init_rows<float>(ctx, 1, 3, keys.data(), bad.data(), 7, 9,
                                                      0.1f, t.data(), 4),
                    Contains("slots[0] = 4 is outside [0, 4)"));
}

TEST_CASE("wide_lookup_forward adds each sample's lr weights; feasign_bag_stats spreads them",
          "[kernels][dynamic]") {
  Context ctx;
  // 2 samples × 2 positions (bags 0..3) in a window starting at bag 1 of a larger CSR.
  const std::vector<int64_t> offsets = {0, 1, 3, 3, 4, 6};
  const std::vector<uint64_t> ids = {9, 0, 1, 2, 2, 0};
  const std::vector<double> lr = {0.5, 0.25, 2.0};
  std::vector<double> out = {10, 20};
  kernels::wide_lookup_forward<double>(ctx, 2, 2, offsets.data() + 1, ids.data(), lr.data(), 3,
                                       out.data());
  CHECK(out == std::vector<double>{10 + 0.5 + 0.25, 20 + 2.0 + 2.0 + 0.5});
  const std::vector<uint64_t> bad_ids = {0, 3};
  const std::vector<int64_t> two = {0, 1, 2};
  CHECK_THROWS_WITH(
      kernels::wide_lookup_forward<double>(ctx, 2, 1, two.data(), bad_ids.data(), lr.data(), 3,
                                           out.data()),
      Contains("wide_lookup_forward: ids[1] = 3 (sample 1) is out of range for a table of 3 rows"));
  // Per bag (2 samples x 2 positions): show 1, the sample's label and dwide; zeros without them.
  std::vector<double> stats(12, -1);
  const std::vector<double> labels = {0.25, 1}, dwide = {-3, 5};
  kernels::feasign_bag_stats<double>(ctx, 2, 2, labels.data(), dwide.data(), stats.data());
  CHECK(stats == std::vector<double>{1, 0.25, -3, 1, 0.25, -3, 1, 1, 5, 1, 1, 5});
  kernels::feasign_bag_stats<double>(ctx, 2, 1, nullptr, nullptr, stats.data());
  CHECK(stats == std::vector<double>{1, 0, 0, 1, 0, 0, 1, 1, 5, 1, 1, 5});
}

TEST_CASE("unique_keys: distinct keys ascending, ids as their positions, grouped by key",
          "[kernels][dynamic]") {
  const Context ctx;
  const uint64_t max = ~uint64_t{0};
  std::vector<uint64_t> ids = {7, max, 0, 7, 3, 7, max};
  // Room for 9 (a padded batch): zeros past the 4 distinct keys, up to the room.
  std::vector<uint64_t> keys(9, 99);
  std::vector<int> order(9, -1);
  std::vector<int64_t> starts(10, -1);
  int64_t n = -1;
  kernels::unique_keys<float>(ctx, static_cast<int64_t>(ids.size()), 9, ids.data(), keys.data(), &n,
                              order.data(), starts.data());
  CHECK(n == 4);
  CHECK(keys == std::vector<uint64_t>{0, 3, 7, max, 0, 0, 0, 0, 0});
  CHECK(ids == std::vector<uint64_t>{2, 3, 0, 2, 1, 2, 3});
  // Key u's positions, ascending: order[starts[u] .. starts[u + 1] - 1]; past nnz untouched.
  CHECK(order == std::vector<int>{2, 4, 0, 3, 5, 1, 6, -1, -1});
  CHECK(starts == std::vector<int64_t>{0, 1, 2, 5, 7, 0, 0, 0, 0, 0});
  std::fill(keys.begin(), keys.end(), 99);
  kernels::unique_keys<float>(ctx, 0, 2, ids.data(), keys.data(), &n, order.data(), starts.data());
  CHECK(n == 0);
  CHECK(keys[1] == 0);
  CHECK(keys[2] == 99);
  CHECK(starts[0] == 0);
  CHECK_THROWS_WITH(kernels::unique_keys<float>(ctx, 7, 6, ids.data(), keys.data(), &n,
                                                order.data(), starts.data()),
                    Contains("room=6 is smaller than nnz=7"));
}

#include <catch2/catch.hpp>

#include <random>

#include "train/control_block.h"

using namespace lockstep;
using namespace lockstep::train;
using Catch::Matchers::Contains;

namespace {
RankReport report(uint64_t step, uint64_t n, bool next, double loss, std::vector<uint64_t> rows) {
  RankReport r;
  r.step = step;
  r.n_samples = n;
  r.has_next = next;
  r.loss_sum = loss;
  r.sparse_rows = std::move(rows);
  return r;
}

/// Simulates the SUM all-reduce of P one-hot blocks.
std::vector<float> reduce(const ControlBlock& cb, const std::vector<RankReport>& reports) {
  std::vector<float> total(cb.size(), 0.0f);
  for (int r = 0; r < cb.ranks(); ++r) {
    std::vector<float> mine(cb.size(), 0.0f);
    cb.encode(reports[r], r, mine.data());
    for (size_t i = 0; i < total.size(); ++i) total[i] += mine[i];
  }
  return total;
}
}  // namespace

TEST_CASE("Control block survives the float all-reduce exactly", "[train][control]") {
  const ControlBlock cb(3, 2);
  REQUIRE(cb.size() == 3 * cb.slot_size());
  const std::vector<RankReport> in = {
      report(123456789012345ull, 4096, true, 2837.123456789012, {17, 0}),
      report(123456789012345ull, 0, false, 0.0, {0, 0}),
      report(123456789012345ull, 1, false, 0.693147180559945, {65535, 65536})};
  const auto out = cb.decode(reduce(cb, in).data());
  for (int r = 0; r < 3; ++r) {
    CHECK(out[r].step == in[r].step);
    CHECK(out[r].n_samples == in[r].n_samples);
    CHECK(out[r].has_next == in[r].has_next);
    CHECK(out[r].sparse_rows == in[r].sparse_rows);
    CHECK(out[r].loss_sum == Approx(in[r].loss_sum).epsilon(1e-13));
  }
  const StepSummary s = summarize(out, 123456789012345ull);
  CHECK(s.samples == 4097);
  CHECK(s.any_next);
  CHECK(s.loss_sum == Approx(2837.123456789012 + 0.693147180559945).epsilon(1e-13));
  CHECK(s.sparse_rows == std::vector<uint64_t>{17, 0, 0, 0, 65535, 65536});
}

TEST_CASE("Large integers round-trip through 16-bit chunks", "[train][control]") {
  const ControlBlock cb(1, 1);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t v = rng();
    std::vector<float> block(cb.size(), 0.0f);
    cb.encode(report(v, v >> 3, false, 0, {v >> 7}), 0, block.data());
    const auto r = cb.decode(block.data())[0];
    REQUIRE(r.step == v);
    REQUIRE(r.n_samples == v >> 3);
    REQUIRE(r.sparse_rows[0] == v >> 7);
  }
}

TEST_CASE("Failures and step divergence raise one error naming ranks and steps", "[train][control]") {
  const ControlBlock cb(3, 0);
  auto in = std::vector<RankReport>{report(12, 5, true, 1, {}), report(13, 5, true, 1, {}),
                                    report(12, 5, true, 1, {})};
  auto out = cb.decode(reduce(cb, in).data());
  CHECK_THROWS_WITH(summarize(out, 12), Contains("divergence at step 12") &&
                                            Contains("rank 1 is at step 13") &&
                                            Contains("0, 2 at step 12"));
  in[1].step = 12;
  in[2].status = kStatusDataFailed;
  out = cb.decode(reduce(cb, in).data());
  CHECK_THROWS_WITH(summarize(out, 12), Contains("step 12 failed on rank 2") &&
                                            Contains("reading the next batch failed"));
  in[2].status = kStatusOk;
  CHECK_NOTHROW(summarize(cb.decode(reduce(cb, in).data()), 12));
}

TEST_CASE("A corrupted control block is refused", "[train][control][errors]") {
  const ControlBlock cb(2, 1);
  std::vector<float> block(cb.size(), 0.0f);
  cb.encode(report(1, 2, true, 0, {3}), 0, block.data());
  cb.encode(report(1, 2, true, 0, {3}), 1, block.data());
  block[cb.slot_size() + 1] = 0.5f;  // rank 1, step chunk 1
  CHECK_THROWS_WITH(cb.decode(block.data()), Contains("'step' of rank 1"));
}

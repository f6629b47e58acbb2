// CUDA graphs of the training step, through their CPU stand-in (LocalTrainer::set_graphs on a
// CPU context keeps the captured launches and replays them): padded batches, the launch log that
// decides whether a graph may replay, and whole models trained with graphs to the bits of
// launching every kernel. test/gpu/graphs_test.cpp runs the same on CUDA.
#include <catch2/catch.hpp>

#include <random>

#include "graph_region_cases.h"
#include "kernels/dropout.h"
#include "kernels/embedding.h"
#include "kernels/init.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/core/launch_recorder.h"
#include "model_fixture.h"
#include "test_util.h"
#include "train/fault_injection.h"
#include "train/step.h"
#include "train/step_graphs.h"

using namespace lockstep;

namespace {

struct Csr {
  std::vector<int64_t> offsets;
  std::vector<uint64_t> ids;
};

// `bags` bags of 0..7 ids below `rows`, id 3 hot (about half the positions).
Csr random_csr(int64_t bags, int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Csr c;
  c.offsets.push_back(0);
  for (int64_t b = 0; b < bags; ++b) {
    const auto len = static_cast<int64_t>(rng() % 8);
    for (int64_t j = 0; j < len; ++j) c.ids.push_back(rng() % 2 ? 3 : rng() % rows);
    c.offsets.push_back(static_cast<int64_t>(c.ids.size()));
  }
  return c;
}

struct SparseGradOut {
  std::vector<uint64_t> unique;
  std::vector<float> rows;
  int64_t n = 0;
};

SparseGradOut backward(const Context& ctx, kernels::Pooling pooling, const Csr& c, int64_t nnz,
                       int64_t dim, const std::vector<float>& dout, int id_bits, bool padded) {
  const auto bags = static_cast<int64_t>(c.offsets.size()) - 1;
  SparseGradOut out;
  out.unique.assign(static_cast<size_t>(std::max<int64_t>(nnz, 1)), 0);
  out.rows.assign(static_cast<size_t>(std::max<int64_t>(nnz, 1) * dim), 0.0f);
  kernels::pooled_lookup_backward<float>(ctx, pooling, bags, dim, c.offsets.data(), c.ids.data(),
                                         nnz, dout.data(), dim, out.unique.data(), out.rows.data(),
                                         &out.n, id_bits, padded);
  out.unique.resize(static_cast<size_t>(out.n));
  out.rows.resize(static_cast<size_t>(out.n * dim));
  return out;
}

// The fixture's dual DNN with a KD warm-up of 3 steps: its ramp is a kernel argument that
// changes every step until then, so graphs start after it.
std::unique_ptr<models::Model<float>> dual_short_warmup(const Context& ctx) {
  auto c = test::fixture_dual_config();
  c.kd_warmup_steps = 3;
  return std::make_unique<models::DualDnn<float>>(c, test::fixture_columns(), 3, ctx);
}

}  // namespace

TEST_CASE("padded_count rounds up to 16-32 steps per power of two", "[graphs][padding]") {
  CHECK(embedding::padded_count(0) == 64);
  CHECK(embedding::padded_count(64) == 64);
  CHECK(embedding::padded_count(65) == 68);  // 65 = 16.25 · 4: steps of 4
  for (int64_t n = 65; n < 200000; n += 37) {
    const int64_t p = embedding::padded_count(n);
    INFO("n " << n);
    CHECK(p >= n);
    CHECK(p - n <= n / 16);
    CHECK(embedding::padded_count(p) == p);
  }
  // Batches whose id counts differ by a few percent share a size.
  CHECK(embedding::padded_count(100000) == embedding::padded_count(102000));
}

TEST_CASE("A padded backward gives the bits of the unpadded one", "[graphs][padding]") {
  const Context ctx;
  const int64_t rows = 64, dim = 5;  // 64 rows: the padding id 64 needs a 7th id bit
  for (const auto pooling : {kernels::Pooling::Sum, kernels::Pooling::Mean}) {
    for (const int64_t bags : {1, 7, 300}) {
      INFO("bags " << bags << " pooling " << static_cast<int>(pooling));
      const Csr c = random_csr(bags, rows, static_cast<uint64_t>(bags));
      const auto nnz = static_cast<int64_t>(c.ids.size());
      std::vector<float> dout(static_cast<size_t>(bags * dim));
      std::mt19937 rng(1);
      std::uniform_real_distribution<float> u(-1, 1);
      for (auto& v : dout) v = u(rng);
      const auto plain =
          backward(ctx, pooling, c, nnz, dim, dout, kernels::id_bits_for(rows), false);
      Csr padded = c;
      const int64_t staged = embedding::padded_count(nnz);
      padded.ids.resize(static_cast<size_t>(staged), rows);
      const auto pad =
          backward(ctx, pooling, padded, staged, dim, dout, kernels::id_bits_for(rows + 1), true);
      CHECK(pad.n == plain.n);
      CHECK(pad.unique == plain.unique);
      CHECK(std::memcmp(pad.rows.data(), plain.rows.data(), plain.rows.size() * sizeof(float)) ==
            0);
    }
  }
  // Every bag empty: only padding.
  Csr empty;
  empty.offsets.assign(4, 0);
  empty.ids.assign(64, rows);
  const auto none =
      backward(ctx, kernels::Pooling::Sum, empty, 64, dim, std::vector<float>(3 * dim, 1.0f),
               kernels::id_bits_for(rows + 1), true);
  CHECK(none.n == 0);
}

TEST_CASE("Padding that is not one id above every bag's ids is refused", "[graphs][padding]") {
  const Context ctx;
  const Csr c = random_csr(20, 50, 3);
  const auto nnz = static_cast<int64_t>(c.ids.size());
  const std::vector<float> dout(20 * 2, 1.0f);
  Csr bad = c;
  bad.ids.resize(static_cast<size_t>(nnz + 4), 50);
  bad.ids[static_cast<size_t>(nnz) + 2] = 51;  // two different padding ids
  CHECK_THROWS_WITH(
      backward(ctx, kernels::Pooling::Sum, bad, nnz + 4, 2, dout, 7, true),
      Catch::Matchers::Contains("padding ids[") && Catch::Matchers::Contains("the same id"));
  bad.ids.assign(c.ids.begin(), c.ids.end());
  bad.ids.resize(static_cast<size_t>(nnz + 4), 3);  // not above the bags' ids
  CHECK_THROWS_WITH(backward(ctx, kernels::Pooling::Sum, bad, nnz + 4, 2, dout, 7, true),
                    Catch::Matchers::Contains("above every id of a bag"));
  // Fewer positions than the offsets name: still an error, padded or not.
  CHECK_THROWS_WITH(backward(ctx, kernels::Pooling::Sum, c, nnz - 1, 2, dout, 7, true),
                    Catch::Matchers::Contains("offsets[20]"));
  CHECK_THROWS_WITH(backward(ctx, kernels::Pooling::Sum, bad, nnz + 4, 2, dout, 7, false),
                    Catch::Matchers::Contains("offsets[20]"));
}

TEST_CASE("A staged batch pads its hashed tables' ids with the row count", "[graphs][padding]") {
  const Context ctx;
  auto model = test::fixture_din(ctx);
  const auto batch = test::fixture_batch(0, 37);
  models::DeviceBatch<float> plain, padded;
  padded.set_pad_ids(true);
  model->stage(ctx, batch, plain);
  model->stage(ctx, batch, padded);
  const auto tables = model->tables();
  REQUIRE(plain.num_tables() == tables.size());
  for (size_t t = 0; t < tables.size(); ++t) {
    INFO("table " << t);
    CHECK_FALSE(plain.padded(t));
    CHECK(plain.staged_nnz(t) == plain.nnz(t));
    CHECK(padded.padded(t));
    CHECK(padded.nnz(t) == plain.nnz(t));
    CHECK(padded.staged_nnz(t) == embedding::padded_count(plain.nnz(t)));
    for (int64_t j = 0; j < padded.staged_nnz(t); ++j)
      CHECK(padded.ids(t)[j] ==
            (j < plain.nnz(t) ? plain.ids(t)[j] : static_cast<uint64_t>(tables[t]->rows())));
  }
}

TEST_CASE("A staged batch pads its dynamic tables' ids past every distinct key",
          "[graphs][padding][dynamic]") {
  // A dynamic table's ids are positions among the batch's distinct keys: padding ids are the
  // staged id count, and the distinct keys and run starts are zeros up to it.
  const Context ctx;
  embedding::AccessorConfig a;
  auto model = test::fixture_din(ctx, &a);
  const auto batch = test::fixture_batch(0, 37);
  models::DeviceBatch<float> plain, padded;
  padded.set_pad_ids(true);
  model->stage(ctx, batch, plain);
  model->stage(ctx, batch, padded);
  for (size_t t = 0; t < plain.num_tables(); ++t) {
    INFO("table " << t);
    const int64_t nnz = plain.nnz(t), staged = padded.staged_nnz(t);
    CHECK(padded.padded(t));
    CHECK(staged == embedding::padded_count(nnz));
    REQUIRE(staged > nnz);
    const int64_t n = *plain.staged_key_count(t);
    CHECK(*padded.staged_key_count(t) == n);
    for (int64_t j = 0; j < staged; ++j) {
      CHECK(padded.ids(t)[j] == (j < nnz ? plain.ids(t)[j] : static_cast<uint64_t>(staged)));
      CHECK(padded.staged_keys(t)[j] == (j < n ? plain.staged_keys(t)[j] : 0));
      CHECK(padded.staged_key_starts(t)[j] == (j <= n ? plain.staged_key_starts(t)[j] : 0));
      if (j < nnz) CHECK(padded.staged_key_order(t)[j] == plain.staged_key_order(t)[j]);
    }
  }
}

TEST_CASE("StepGraphs replays a region only when it would launch the same work",
          "[graphs][replay]") {
  const Context ctx;
  train::StepGraphs graphs(ctx);
  Tensor<float> out;
  out.resize(ctx, {8});
  float value = 1.0f;
  int host_runs = 0;
  const std::function<const void*()> region = [&]() -> const void* {
    ++host_runs;
    kernels::fill_constant<float>(ctx, 8, value, out.data());
    return out.data();
  };
  const std::vector<int64_t> key = {1, 2, 3};
  const auto run_and_read = [&] {
    kernels::fill_constant<float>(ctx, 8, -7.0f, out.data());  // what a skipped launch leaves
    CHECK(graphs.run(key, region) == out.data());
    return out.data()[5];
  };
  CHECK(run_and_read() == 1.0f);  // run, logged
  CHECK(run_and_read() == 1.0f);  // run, logged the same: stable
  CHECK(graphs.stats().eager == 2);
  CHECK(graphs.stats().captured == 0);
  CHECK(run_and_read() == 1.0f);  // captured: the kept launch ran
  CHECK(graphs.stats().captured == 1);
  CHECK(run_and_read() == 1.0f);  // replayed: the host pass launched nothing, the graph did
  CHECK(run_and_read() == 1.0f);
  CHECK(graphs.stats().replayed == 2);
  CHECK(host_runs == 5);

  // An argument the key does not cover changes: the graph would write 1; the step runs eagerly
  // and the key starts over.
  value = 2.0f;
  CHECK(run_and_read() == 2.0f);
  CHECK(graphs.stats().fallbacks == 1);
  CHECK(host_runs == 7);  // the host pass, then the eager run
  CHECK(run_and_read() == 2.0f);
  CHECK(run_and_read() == 2.0f);  // captured again
  CHECK(graphs.stats().captured == 2);
  CHECK(run_and_read() == 2.0f);
  CHECK(graphs.stats().replayed == 3);

  // An argument that changes every run (a warm-up's weight) never lets the key settle.
  for (int i = 0; i < 5; ++i) {
    value = static_cast<float>(10 + i);
    CHECK(run_and_read() == value);
  }
  CHECK(graphs.stats().captured == 2);
  CHECK(graphs.stats().replayed == 3);

  // Another key: its own graph. An allocation since its capture (here the workspace growing)
  // makes it capture again.
  const std::vector<int64_t> other = {4};
  for (int i = 0; i < 4; ++i) graphs.run(other, region);
  CHECK(graphs.stats().captured == 3);
  CHECK(graphs.stats().replayed == 4);
  ctx.workspace(size_t{1} << 20);
  graphs.run(other, region);  // run eagerly, logged as before
  graphs.run(other, region);  // captured
  CHECK(graphs.stats().captured == 4);
  graphs.run(other, region);
  CHECK(graphs.stats().replayed == 5);
}

TEST_CASE("A region that reads the device on the host is never captured", "[graphs][replay]") {
  Context ctx;
  Tensor<float> out;
  out.resize(ctx, {4});
  train::StepGraphs graphs(ctx);
  const std::function<const void*()> region = [&]() -> const void* {
    kernels::fill_constant<float>(ctx, 4, 1.0f, out.data());
    to_host(ctx, out.data(), 4);
    return out.data();
  };
  for (int i = 0; i < 4; ++i) graphs.run({7}, region);
  CHECK(graphs.stats().eager == 4);
  CHECK(graphs.stats().captured == 0);
  CHECK(graphs.stats().not_capturable == 1);
}

TEST_CASE("An exception that is not lockstep's goes through a capture, which starts over",
          "[graphs][replay]") {
  test::check_foreign_exception_in_capture(Context());
}

TEST_CASE("A region that frees a buffer is neither captured nor replayed over it",
          "[graphs][replay]") {
  test::check_region_that_frees(Context());
}

TEST_CASE("A region that draws random numbers replays them fresh at every step",
          "[graphs][replay]") {
  Context ctx(Device::cpu(), ContextOptions{false, 0, 11});
  const int64_t n = 64;
  Tensor<float> x, out;
  x.resize(ctx, {n});
  out.resize(ctx, {n});
  kernels::fill_constant<float>(ctx, n, 1.0f, x.data());
  float p = 0.5f;
  const std::function<const void*()> region = [&]() -> const void* {
    const auto c = ctx.reserve_random_counters(static_cast<uint64_t>(n));
    kernels::dropout_forward<float>(ctx, n, p, ctx.random_seed(), c.base, c.offset, x.data(),
                                    out.data());
    return out.data();
  };
  train::StepGraphs graphs(ctx);
  std::vector<float> expected(n), previous;
  for (int step = 0; step < 10; ++step) {
    INFO("step " << step);
    if (step == 7) p = 0.25f;  // an argument outside the key: the host pass falls back
    // What an eager step draws: the counters from the stream's offset before it.
    const uint64_t first = ctx.random_offset();
    kernels::cpu::dropout_forward<float>(ctx, n, p, ctx.random_seed(), nullptr, first, x.data(),
                                         expected.data());
    kernels::fill_constant<float>(ctx, n, -7.0f, out.data());  // what a skipped launch leaves
    CHECK(graphs.run({7}, region) == out.data());
    test::require_bitwise_equal(std::vector<float>(out.data(), out.data() + n), expected,
                                "the step's dropout");
    CHECK(ctx.random_offset() == first + static_cast<uint64_t>(n));  // one step's draws
    CHECK(expected != previous);                                     // fresh numbers
    previous = expected;
  }
  CHECK(graphs.stats().captured == 2);  // once before p changed, once after
  CHECK(graphs.stats().replayed == 4);  // steps 3..6
  CHECK(graphs.stats().fallbacks == 1);
  CHECK(graphs.stats().not_capturable == 0);
}

TEST_CASE("Models trained with step graphs keep the bits of launching every kernel",
          "[graphs][train]") {
  const auto a = test::fixture_batch(0, 37), b = test::fixture_batch(37, 37),
             c = test::fixture_batch(74, 20);
  // Shapes repeat (a and b seven times each), batches of another size between them.
  const std::vector<const data::Batch*> order = {&a, &b, &a, &b, &c, &a, &b, &a,
                                                 &b, &c, &a, &b, &a, &b, &a, &b};
  for (int which = 0; which < 5; ++which) {
    INFO("model " << which);
    const auto make = [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      if (which == 0) return test::fixture_model(ctx);
      if (which == 1) return test::fixture_din(ctx);
      if (which == 2) return test::fixture_bst(ctx, nullptr, /*dropout=*/0.0f);
      if (which == 3) return dual_short_warmup(ctx);
      return test::fixture_bst(ctx);  // dropout 0.1: its draws replayed fresh
    };
    Context ctx_a, ctx_b;
    auto model_a = make(ctx_a), model_b = make(ctx_b);
    train::LocalTrainer<float> graphed(*model_a, ctx_a), plain(*model_b, ctx_b);
    CHECK_FALSE(graphed.graphs());  // off by default on the CPU
    graphed.set_graphs(true);
    REQUIRE(graphed.graphs());
    for (size_t i = 0; i < order.size(); ++i) {
      INFO("step " << i);
      CHECK(graphed.step(*order[i]) == plain.step(*order[i]));
      CHECK(test::state_hash(ctx_a, *model_a) == test::state_hash(ctx_b, *model_b));
    }
    const train::GraphStats s = graphed.graph_stats();
    CHECK(s.fallbacks == 0);
    CHECK(s.not_capturable == 0);
    CHECK(s.replayed >= 4);
    CHECK(s.captured >= 1);
    CHECK(s.captured <= 2);
  }
}

TEST_CASE("Lockstep steps with graphs and batches staged ahead keep their bits",
          "[graphs][train][stage-ahead]") {
  const auto a = test::fixture_batch(0, 37), b = test::fixture_batch(37, 37);
  std::vector<const data::Batch*> order;
  for (int i = 0; i < 14; ++i) order.push_back(i % 2 ? &b : &a);
  for (int which = 0; which < 3; ++which) {
    INFO("model " << which);
    const auto make = [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      if (which == 0) return test::fixture_din(ctx);
      if (which == 1) return dual_short_warmup(ctx);
      static const embedding::AccessorConfig accessor = [] {
        embedding::AccessorConfig r;
        r.embedx_threshold = 2;  // admitted within the test
        return r;
      }();
      return test::fixture_dynamic_model(ctx, accessor, 40, 60);  // evicting dynamic tables
    };
    Context ctx_a, ctx_b;
    auto comm_a = comm::create_communicator("local", ctx_a.device());
    auto comm_b = comm::create_communicator("local", ctx_b.device());
    auto model_a = make(ctx_a), model_b = make(ctx_b);
    train::LockstepStep graphed(*model_a, *comm_a, ctx_a), plain(*model_b, *comm_b, ctx_b);
    CHECK(graphed.set_graphs(true));
    const train::FaultInjection no_fault;
    for (size_t i = 0; i < order.size(); ++i) {
      train::StepInput input;
      input.step = i;
      input.has_next = i + 1 < order.size();
      const data::Batch* next = input.has_next ? order[i + 1] : nullptr;
      graphed.run(*order[i], input, no_fault, next);
      plain.run(*order[i], input, no_fault, next);
      CHECK(test::state_hash(ctx_a, *model_a) == test::state_hash(ctx_b, *model_b));
    }
    CHECK(graphed.steps_staged_ahead() == static_cast<int64_t>(order.size()) - 1);
    CHECK(graphed.local().graph_stats().replayed > 0);
  }
}

// CUDA graphs of the training step (train/step_graphs.h) against launching every kernel: the
// same bits, step after step, for every model kind (hashed and dynamic tables), through
// LocalTrainer and through the lockstep step with batches staged ahead; and a padded backward
// on the device against the unpadded one. test/unit/step_graphs_test.cpp covers the same logic on
// the CPU.

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include "gpu_util.h"
#include "graph_region_cases.h"
#include "kernels/embedding.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "train/fault_injection.h"
#include "train/step.h"

using namespace lockstep;

namespace {

using ModelFactory = std::function<std::unique_ptr<models::Model<float>>(const Context&)>;

const embedding::AccessorConfig& dynamic_rules() {
  static const embedding::AccessorConfig a = [] {
    embedding::AccessorConfig r;
    r.embedx_threshold = 2;  // admitted within the test: embedx rows are gathered and learn
    return r;
  }();
  return a;
}
// A capacity whose bound on the held feasigns never reaches it in these tests: no eviction
// check reads counters back.
constexpr int64_t kRoomy = int64_t{1} << 16;

const std::vector<ModelFactory>& factories() {
  static const std::vector<ModelFactory> all = {
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_model(c);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_din(c);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_bst(c, nullptr, 0.0f);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        auto config = test::fixture_dual_config();
        config.kd_warmup_steps = 3;  // its ramp is a kernel argument: graphs start after it
        return std::make_unique<models::DualDnn<float>>(config, test::fixture_columns(), 3, c);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_bst(c);  // dropout 0.1: its draws replayed fresh
      },
      // Dynamic tables (issue 13): their ids padded like a hashed table's, their distinct keys
      // counted on the device. Evicting tables (capacities 40 and 60) read two counters in
      // every update, outside the graphed region; the others have room for every step's keys.
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_dynamic_model(c, dynamic_rules(), 40, 60);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_din(c, &dynamic_rules(), kRoomy);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        return test::fixture_bst(c, &dynamic_rules(), 0.1f, kRoomy);
      },
      [](const Context& c) -> std::unique_ptr<models::Model<float>> {
        auto config = test::fixture_dual_config(models::DualMode::Joint, &dynamic_rules(), kRoomy);
        config.kd_warmup_steps = 3;
        return std::make_unique<models::DualDnn<float>>(config, test::fixture_columns(), 3, c);
      },
  };
  return all;
}
constexpr size_t kEvicting = 5;  // the factory whose tables evict

ContextOptions without_graphs() {
  ContextOptions o;
  o.cuda_graphs = false;
  return o;
}

}  // namespace

TEST_CASE("CUDA graphs train every model to the bits of launching every kernel", "[gpu][graphs]") {
  const auto a = test::fixture_batch(0, 300, 20), b = test::fixture_batch(300, 300, 20),
             c = test::fixture_batch(600, 77, 20);
  const std::vector<const data::Batch*> order = {&a, &b, &a, &b, &c, &a, &b, &a,
                                                 &b, &c, &a, &b, &a, &b, &a, &b};
  for (size_t which = 0; which < factories().size(); ++which) {
    INFO("model " << which);
    const Context graphed_ctx(Device::cuda(0)), eager_ctx(Device::cuda(0), without_graphs());
    auto model_a = factories()[which](graphed_ctx), model_b = factories()[which](eager_ctx);
    train::LocalTrainer<float> graphed(*model_a, graphed_ctx), eager(*model_b, eager_ctx);
    REQUIRE(graphed.graphs());
    REQUIRE_FALSE(eager.graphs());
    for (size_t i = 0; i < order.size(); ++i) {
      INFO("step " << i);
      CHECK(graphed.step(*order[i]) == eager.step(*order[i]));
      CHECK(test::state_hash(graphed_ctx, *model_a) == test::state_hash(eager_ctx, *model_b));
    }
    const train::GraphStats s = graphed.graph_stats();
    CHECK(s.fallbacks == 0);
    CHECK(s.not_capturable == 0);
    CHECK(s.replayed >= 4);
  }
}

TEST_CASE("CUDA graphs under the lockstep step, batches staged ahead, keep their bits",
          "[gpu][graphs]") {
  const auto a = test::fixture_batch(0, 300, 20), b = test::fixture_batch(300, 300, 20);
  for (size_t which = 1; which < factories().size(); ++which) {
    INFO("model " << which);
    Context graphed_ctx(Device::cuda(0)), eager_ctx(Device::cuda(0), without_graphs());
    auto comm_a = comm::create_communicator("local", graphed_ctx.device());
    auto comm_b = comm::create_communicator("local", eager_ctx.device());
    auto model_a = factories()[which](graphed_ctx), model_b = factories()[which](eager_ctx);
    train::LockstepStep graphed(*model_a, *comm_a, graphed_ctx),
        eager(*model_b, *comm_b, eager_ctx);
    REQUIRE(graphed.local().graphs());
    const train::FaultInjection no_fault;
    for (uint64_t i = 0; i < 14; ++i) {
      train::StepInput input;
      input.step = i;
      input.has_next = i + 1 < 14;
      const data::Batch* next = input.has_next ? (i % 2 ? &a : &b) : nullptr;
      const uint64_t waits_a = graphed_ctx.stream_waits(), waits_b = eager_ctx.stream_waits();
      const auto& sa = graphed.run(i % 2 ? b : a, input, no_fault, next);
      const auto& sb = eager.run(i % 2 ? b : a, input, no_fault, next);
      CHECK(sa.loss_sum == sb.loss_sum);
      // The host waits for the stream once per step, at the sync point (and an evicting
      // dynamic table once more, to decide on eviction).
      if (i >= 2 && which != kEvicting) {
        CHECK(graphed_ctx.stream_waits() == waits_a + 1);
        CHECK(eager_ctx.stream_waits() == waits_b + 1);
      }
      CHECK(test::state_hash(graphed_ctx, *model_a) == test::state_hash(eager_ctx, *model_b));
    }
    CHECK(graphed.local().graph_stats().replayed > 0);
    CHECK(graphed.local().graph_stats().fallbacks == 0);
  }
}

TEST_CASE("An exception that is not lockstep's ends the stream's capture on its way up",
          "[gpu][graphs]") {
  test::check_foreign_exception_in_capture(Context(Device::cuda(0)));
}

TEST_CASE("A region that frees a device buffer is neither captured nor replayed over it",
          "[gpu][graphs]") {
  test::check_region_that_frees(Context(Device::cuda(0)));
}

TEST_CASE("A padded backward on CUDA gives the bits of the CPU's unpadded one", "[gpu][graphs]") {
  test::ParityContexts ctx;
  const int64_t rows = 1 << 10, dim = 16, bags = 2000;
  std::mt19937_64 rng(5);
  std::vector<int64_t> offsets = {0};
  std::vector<uint64_t> ids;
  for (int64_t b = 0; b < bags; ++b) {
    const auto len = static_cast<int64_t>(rng() % 6);
    for (int64_t j = 0; j < len; ++j) ids.push_back(rng() % 3 ? 7 : rng() % rows);  // 7 is hot
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
  const auto nnz = static_cast<int64_t>(ids.size());
  std::vector<float> dout(static_cast<size_t>(bags * dim));
  std::uniform_real_distribution<float> u(-1, 1);
  std::mt19937 frng(2);
  for (auto& v : dout) v = u(frng);
  std::vector<uint64_t> cpu_unique(nnz);
  std::vector<float> cpu_rows(nnz * dim);
  int64_t cpu_n = 0;
  kernels::pooled_lookup_backward<float>(ctx.cpu, kernels::Pooling::Mean, bags, dim, offsets.data(),
                                         ids.data(), nnz, dout.data(), dim, cpu_unique.data(),
                                         cpu_rows.data(), &cpu_n, kernels::id_bits_for(rows));
  const int64_t staged = embedding::padded_count(nnz);
  std::vector<uint64_t> padded = ids;
  padded.resize(static_cast<size_t>(staged), static_cast<uint64_t>(rows));
  const auto d_offsets = test::to_gpu(ctx.gpu, offsets);
  const auto d_ids = test::to_gpu(ctx.gpu, padded);
  const auto d_dout = test::to_gpu(ctx.gpu, dout);
  Tensor<uint64_t> d_unique;
  Tensor<float> d_rows;
  Tensor<int64_t> d_n;
  d_unique.resize(ctx.gpu, {staged});
  d_rows.resize(ctx.gpu, {staged, dim});
  d_n.resize(ctx.gpu, {1});
  kernels::pooled_lookup_backward<float>(ctx.gpu, kernels::Pooling::Mean, bags, dim,
                                         d_offsets.data(), d_ids.data(), staged, d_dout.data(), dim,
                                         d_unique.data(), d_rows.data(), d_n.data(),
                                         kernels::id_bits_for(rows + 1), /*padded=*/true);
  const int64_t n = to_host(ctx.gpu, d_n.data(), 1)[0];
  REQUIRE(n == cpu_n);
  cpu_unique.resize(n);
  cpu_rows.resize(n * dim);
  test::require_bitwise_equal(to_host(ctx.gpu, d_unique.data(), n), cpu_unique, "unique ids");
  test::require_bitwise_equal(to_host(ctx.gpu, d_rows.data(), n * dim), cpu_rows, "rows");
}

// The lockstep step's internals: the device-side encoding of control-block counts, and the
// promise that a step reads device memory on the host exactly once (after its collective).
#include <catch2/catch.hpp>

#include <random>

#include "kernels/control.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/factory.h"
#include "lockstep/train/batch_source.h"
#include "lockstep/train/trainer.h"
#include "model_fixture.h"
#include "train/control_block.h"
#include "train/fault_injection.h"
#include "train/step.h"

using namespace lockstep;

TEST_CASE("Counts encoded on the device decode like the host encoding", "[train][control]") {
  Context ctx;
  std::mt19937_64 rng(7);
  std::vector<int64_t> values = {0, 1, 65535, 65536, (int64_t{1} << 48) + 12345,
                                 std::numeric_limits<int64_t>::max(), -5};
  for (int i = 0; i < 50; ++i) values.push_back(static_cast<int64_t>(rng() >> 1));
  for (const int64_t v : values) {
    INFO("value " << v);
    float device[4] = {-1, -1, -1, -1}, host[4];
    kernels::encode_count_chunks<float>(ctx, &v, device);
    train::put_u64_chunks(v < 0 ? 0 : static_cast<uint64_t>(v), host);
    for (int c = 0; c < 4; ++c) CHECK(device[c] == host[c]);
    uint64_t back = 0;
    REQUIRE(train::get_u64_chunks(device, back));
    CHECK(back == (v < 0 ? 0u : static_cast<uint64_t>(v)));
  }
}

TEST_CASE("A lockstep step reads device memory on the host once", "[train][trainer][host-reads]") {
  for (const auto activation : {nn::ActivationKind::ReLU, nn::ActivationKind::Dice}) {
    Context ctx;
    auto comm = comm::create_communicator("local", ctx.device());
    auto model = test::fixture_model(ctx, activation);
    train::TrainerConfig cfg;
    cfg.log_every = 1;  // progress lines must not read the device either
    train::Trainer trainer(*model, *comm, ctx, cfg);
    std::vector<data::Batch> data;
    for (int i = 0; i < 6; ++i) data.push_back(test::fixture_batch(i * 16, 16));
    data.push_back(test::fixture_batch(200, 0));  // an empty batch steps too
    train::VectorBatchSource source(data);
    std::vector<uint64_t> reads;
    trainer.on_step([&](const train::StepInfo&) { reads.push_back(ctx.host_reads()); });
    trainer.fit(source);
    REQUIRE(reads.size() >= 6);
    for (size_t i = 1; i < reads.size(); ++i) {
      INFO("step " << i);
      CHECK(reads[i] - reads[i - 1] == 1);
    }
  }
}

TEST_CASE("Every built-in model steps with one host read", "[train][trainer][host-reads]") {
  auto config = data::SyntheticConfig::preset("demo");
  auto generator = std::make_shared<const data::SyntheticGenerator>(config);
  for (const std::string kind : {"embedding_mlp", "din", "bst", "dual"}) {
    for (const bool student_only : {false, true}) {
      if (student_only && kind != "dual") continue;
      INFO(kind << (student_only ? " (student only)" : ""));
      Context ctx;
      auto comm = comm::create_communicator("local", ctx.device());
      auto model = models::make_preset_model<float>(kind, generator->schema(), 512, ctx,
                                                    student_only);
      train::TrainerConfig cfg;
      cfg.log_every = 0;
      train::Trainer trainer(*model, *comm, ctx, cfg);
      train::SyntheticBatchSource source(generator, 0, 4 * 32, 32, 0, 1);
      std::vector<uint64_t> reads;
      trainer.on_step([&](const train::StepInfo&) { reads.push_back(ctx.host_reads()); });
      const auto r = trainer.fit(source);
      REQUIRE(r.updates == 4);
      for (size_t i = 1; i < reads.size(); ++i) CHECK(reads[i] - reads[i - 1] == 1);
    }
  }
}

TEST_CASE("A batch staged ahead gives the bits of staging it in its own step",
          "[train][stage-ahead]") {
  static const embedding::AccessorConfig accessor;
  const auto batches = test::fixture_batches(5, 37);
  for (int which = 0; which < 4; ++which) {
    INFO("model " << which);
    const auto make = [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      if (which == 0) return test::fixture_din(ctx);
      if (which == 1) return test::fixture_bst(ctx);
      if (which == 2) return test::fixture_dual(ctx);
      return test::fixture_dynamic_model(ctx, accessor);
    };
    Context ctx_a, ctx_b;
    auto comm_a = comm::create_communicator("local", ctx_a.device());
    auto comm_b = comm::create_communicator("local", ctx_b.device());
    auto model_a = make(ctx_a), model_b = make(ctx_b);
    train::LockstepStep ahead(*model_a, *comm_a, ctx_a), plain(*model_b, *comm_b, ctx_b);
    const train::FaultInjection no_fault;
    for (size_t i = 0; i < batches.size(); ++i) {
      train::StepInput input;
      input.step = i;
      input.has_next = i + 1 < batches.size();
      ahead.run(batches[i], input, no_fault, input.has_next ? &batches[i + 1] : nullptr);
      plain.run(batches[i], input, no_fault);
      CHECK(test::state_hash(ctx_a, *model_a) == test::state_hash(ctx_b, *model_b));
    }
    CHECK(ahead.steps_staged_ahead() == static_cast<int64_t>(batches.size()) - 1);
    CHECK(plain.steps_staged_ahead() == 0);

    // Staged for step 5, but the next call is step 9 (another source): staged again.
    train::StepInput input;
    input.step = 5;
    ahead.run(batches[0], input, no_fault, &batches[1]);
    plain.run(batches[0], input, no_fault);
    input.step = 9;
    ahead.run(batches[2], input, no_fault);
    plain.run(batches[2], input, no_fault);
    CHECK(test::state_hash(ctx_a, *model_a) == test::state_hash(ctx_b, *model_b));
    CHECK(ahead.steps_staged_ahead() == static_cast<int64_t>(batches.size()) - 1);
  }
}

TEST_CASE("A next batch that cannot be staged fails its own step, with the staging error",
          "[train][stage-ahead]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_din(ctx);
  train::LockstepStep step(*model, *comm, ctx);
  const train::FaultInjection no_fault;
  const auto good = test::fixture_batch(0, 20);
  auto bad = test::fixture_batch(20, 20);
  bad.sparse[0].offsets.back() += 3;  // more keys announced than there are
  train::StepInput input;
  input.has_next = true;
  CHECK(step.run(good, input, no_fault, &bad).samples == 20);  // this step is not affected
  input.step = 1;
  input.has_next = false;
  CHECK_THROWS_WITH(step.run(bad, input, no_fault), Catch::Matchers::Contains("malformed"));
  CHECK(step.steps_staged_ahead() == 0);
}

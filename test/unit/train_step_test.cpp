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

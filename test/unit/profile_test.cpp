// The step profile (lockstep/core/profile.h): phases and kernels counted per step, nested kernel
// scopes once, nothing without a Profile, evaluation left out of a Trainer's profile, and the
// same training with and without profiling.
#include <catch2/catch.hpp>

#include <algorithm>

#include "lockstep/comm/communicator.h"
#include "lockstep/core/profile.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"
#include "model_fixture.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const Profile::Entry* find(const std::vector<Profile::Entry>& list, const std::string& name) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& e) { return e.name == name; });
  return it == list.end() ? nullptr : &*it;
}
}  // namespace

TEST_CASE("A profile counts a step's phases and the kernels it launches", "[core][profile]") {
  Context ctx;
  auto model = test::fixture_din(ctx);
  train::LocalTrainer<float> trainer(*model, ctx);
  const auto batches = test::fixture_batches(3, 32);
  trainer.step(batches[0]);  // unprofiled
  Profile p;
  {
    const ScopedProfile attached(ctx, &p);
    CHECK(ctx.profile() == &p);
    trainer.step(batches[1]);
    trainer.step(batches[2]);
  }
  CHECK(ctx.profile() == nullptr);
  trainer.step(batches[0]);  // unprofiled again: nothing more counted
  for (const char* phase : {"stage (batch to device)", "forward", "loss + backward", "optimizer"}) {
    INFO(phase);
    const auto* e = find(p.phases(), phase);
    REQUIRE(e != nullptr);
    CHECK(e->calls == 2);
    CHECK(e->seconds > 0);
  }
  for (const char* kernel : {"gemm", "pooled_lookup_forward", "pooled_lookup_backward",
                             "din_unit_prelu_forward", "sparse_adagrad_update"}) {
    INFO(kernel);
    const auto* e = find(p.kernels(), kernel);
    REQUIRE(e != nullptr);
    CHECK(e->calls % 2 == 0);  // the same launches in both steps
  }
  double kernels = 0, phases = 0;
  for (const auto& e : p.kernels()) kernels += e.seconds;
  for (const auto& e : p.phases()) phases += e.seconds;
  CHECK(kernels <= phases);  // kernels run inside the phases, each counted once
  const std::string table = p.table(2);
  CHECK_THAT(table, Contains("loss + backward") && Contains("din_unit_prelu_forward") &&
                        Contains("sum of phases") && Contains("all kernels"));
}

TEST_CASE("Nested kernel scopes count once; phases nest freely", "[core][profile]") {
  Context ctx;
  Profile p;
  const ScopedProfile attached(ctx, &p);
  {
    const ProfileScope outer(ctx, "outer", ProfileScope::Kind::Kernel);
    const ProfileScope inner(ctx, "inner", ProfileScope::Kind::Kernel);
    const ProfilePhase phase(ctx, "phase");
  }
  REQUIRE(p.kernels().size() == 1);
  CHECK(p.kernels()[0].name == "outer");
  CHECK(p.kernels()[0].calls == 1);
  CHECK(p.kernel_depth == 0);
  REQUIRE(p.phases().size() == 1);
  CHECK(p.phases()[0].name == "phase");
}

TEST_CASE("A profiled Trainer trains bitwise like an unprofiled one and leaves evaluation out",
          "[core][profile][train]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto a = test::fixture_model(ctx);
  auto b = test::fixture_model(ctx);
  auto c = test::fixture_model(ctx);
  const auto data = test::fixture_batches(4, 32);
  train::TrainerConfig plain;
  plain.log_every = 0;
  plain.eval_every = 2;  // evaluations between the steps: not part of the profile
  train::TrainerConfig profiled = plain;
  profiled.profile = true;  // the trainer's own Profile, logged at the end
  train::VectorBatchSource s1(data), s2(data), s3(data), e1(data), e2(data), e3(data);
  train::Trainer(*a, *comm, ctx, plain).fit(s1, &e1);
  Profile p;
  {
    const ScopedProfile attached(ctx, &p);  // a caller's Profile: the trainer adds to it
    train::Trainer(*b, *comm, ctx, plain).fit(s2, &e2);
  }
  train::Trainer(*c, *comm, ctx, profiled).fit(s3, &e3);
  CHECK(ctx.profile() == nullptr);  // detached after fit()
  for (const char* phase :
       {"forward", "loss + backward", "all-reduce", "sync point (the host read)", "optimizer"}) {
    INFO(phase);
    const auto* e = find(p.phases(), phase);
    REQUIRE(e != nullptr);
    CHECK(e->calls == 4);  // the 4 training steps, not the evaluations' forwards
  }
  // Each step's batch is staged once: the first in its step, the others during the step before.
  const auto* staged = find(p.phases(), "stage (batch to device)");
  const auto* ahead = find(p.phases(), "stage ahead (next batch to device)");
  REQUIRE(staged != nullptr);
  REQUIRE(ahead != nullptr);
  CHECK(staged->calls == 1);
  CHECK(ahead->calls == 3);
  REQUIRE(find(p.phases(), "data wait") != nullptr);
  test::require_bitwise_equal(test::all_parameters(ctx, *b), test::all_parameters(ctx, *a),
                              "parameters (caller's profile)");
  test::require_bitwise_equal(test::all_parameters(ctx, *c), test::all_parameters(ctx, *a),
                              "parameters (TrainerConfig::profile)");
}

// GradientBuckets (train/gradient_buckets.h): the cut of the gradient buffer, buckets started
// during the backward only once their gradients are final (checked against the gradients after
// the whole backward, for every model kind), in the same order every step, a write after a
// bucket started refused, and the failure path keeping what started. The bits across ranks are
// checked under mpirun (test/mpi/trainer_test.cpp).
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "test_util.h"
#include "train/gradient_buckets.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

/// Two ranks as far as GradientBuckets can tell; records each started bucket with a copy of its
/// data at the moment it started.
class RecordingComm final : public comm::Communicator {
 public:
  struct Start {
    const float* data;
    std::vector<float> values;
  };
  std::vector<Start> starts;
  int waits = 0;

  std::string backend() const override { return "recording"; }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  int local_rank() const override { return 0; }
  void all_reduce_sum(const Context&, void*, int64_t, comm::DataType) override {
    ++stats_.all_reduce;
  }
  void all_reduce_sum_start(const Context&, void* data, int64_t count,
                            comm::DataType type) override {
    REQUIRE(type == comm::DataType::F32);
    const auto* x = static_cast<const float*>(data);
    starts.push_back({x, std::vector<float>(x, x + count)});
  }
  void all_reduce_wait(const Context&) override { ++waits; }
  void all_gather_v(const Context&, const void*, void*, const std::vector<int64_t>&,
                    comm::DataType) override {}
  void broadcast(const Context&, void*, int64_t, comm::DataType, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int) override { std::abort(); }
};

using Factory = std::function<std::unique_ptr<models::Model<float>>(const Context&)>;

std::vector<std::pair<const char*, Factory>> models_under_test() {
  return {
      {"embedding_mlp (PReLU)",
       [](const Context& c) {
         return std::unique_ptr<models::Model<float>>(test::fixture_model(c));
       }},
      {"embedding_mlp (Dice)",
       [](const Context& c) {
         return std::unique_ptr<models::Model<float>>(
             test::fixture_model(c, nn::ActivationKind::Dice));
       }},
      {"din",
       [](const Context& c) {
         return std::unique_ptr<models::Model<float>>(test::fixture_din(c));
       }},
      {"bst",
       [](const Context& c) {
         return std::unique_ptr<models::Model<float>>(test::fixture_bst(c));
       }},
      {"dual",
       [](const Context& c) {
         return std::unique_ptr<models::Model<float>>(test::fixture_dual(c));
       }},
  };
}

}  // namespace

TEST_CASE("Gradient buckets tile the trainable gradients from the end, cut at parameters",
          "[buckets]") {
  Context ctx;
  auto model = test::fixture_dual(ctx);
  auto& params = model->dense_params();
  RecordingComm comm;
  for (const int64_t bytes : {int64_t{1}, int64_t{64}, int64_t{1000}, int64_t{1} << 30}) {
    INFO("bucket bytes " << bytes);
    train::GradientBuckets buckets(params, comm, bytes);
    const auto& b = buckets.buckets();
    REQUIRE(!b.empty());
    CHECK(b.front().end == params.trainable_size());
    CHECK(b.back().begin == 0);
    CHECK(buckets.covered() == params.trainable_size());
    std::vector<int> seen(params.entries().size(), 0);
    for (size_t i = 0; i < b.size(); ++i) {
      if (i > 0) CHECK(b[i].end == b[i - 1].begin);
      CHECK(b[i].begin < b[i].end);
      if (i + 1 < b.size()) CHECK((b[i].end - b[i].begin) * 4 >= bytes);
      for (const int h : b[i].handles) {
        ++seen[static_cast<size_t>(h)];
        const auto& e = params.entry(h);
        CHECK(e.offset >= b[i].begin);
        CHECK(e.offset + e.numel() <= b[i].end);
      }
    }
    for (size_t h = 0; h < seen.size(); ++h)
      CHECK(seen[h] == (params.entries()[h].trainable ? 1 : 0));
    if (bytes == 1)
      CHECK(b.size() ==
            static_cast<size_t>(std::count_if(params.entries().begin(), params.entries().end(),
                                              [](const auto& e) { return e.trainable; })));
    if (bytes == int64_t{1} << 30) CHECK(b.size() == 1);
  }
  train::GradientBuckets none(params, comm, 0);
  CHECK(none.buckets().empty());
  CHECK(none.covered() == 0);
}

TEST_CASE("A bucket starts during the backward only when its gradients are final", "[buckets]") {
  const auto batches = test::fixture_batches(3, 40);
  for (const auto& [name, make] : models_under_test()) {
    for (const int64_t bytes : {int64_t{1}, int64_t{512}}) {
      INFO(name << ", buckets of " << bytes << " bytes");
      Context ctx;
      auto model = make(ctx);
      auto& params = model->dense_params();
      train::LocalTrainer<float> trainer(*model, ctx);
      RecordingComm comm;
      train::GradientBuckets buckets(params, comm, bytes);
      const size_t n = buckets.buckets().size();
      for (size_t step = 0; step < batches.size(); ++step) {
        comm.starts.clear();
        buckets.begin_step();
        trainer.compute_gradients(trainer.stage(batches[step]));
        const size_t early = comm.starts.size();
        // The first backward only counts the writes; later ones start buckets as they finish.
        if (step == 0) CHECK(early == 0);
        if (step > 0) CHECK(early > 0);
        CHECK(buckets.started_early() == static_cast<int>(early));
        buckets.flush(ctx, /*backward_completed=*/true);
        REQUIRE(comm.starts.size() == n);
        for (size_t i = 0; i < n; ++i) {
          const auto& bucket = buckets.buckets()[i];
          CHECK(comm.starts[i].data == params.grads() + bucket.begin);  // in order, once each
          // What was summed is what the whole backward left there.
          test::require_bitwise_equal(
              comm.starts[i].values,
              std::vector<float>(params.grads() + bucket.begin, params.grads() + bucket.end),
              "bucket at its start vs after the backward");
        }
        model->apply_gradients(ctx, 1.0f / 40);
      }
    }
  }
}

TEST_CASE("A gradient written after its bucket started is an error naming the parameter",
          "[buckets]") {
  Context ctx;
  auto model = test::fixture_din(ctx);
  auto& params = model->dense_params();
  train::LocalTrainer<float> trainer(*model, ctx);
  RecordingComm comm;
  train::GradientBuckets buckets(params, comm, 1);
  const auto batch = test::fixture_batch(0, 30);
  for (int step = 0; step < 2; ++step) {
    buckets.begin_step();
    trainer.compute_gradients(trainer.stage(batch));
    if (step == 0) buckets.flush(ctx, true);
  }
  // Step 2's backward has started every bucket; one more write into bucket 0 is refused.
  const int h = buckets.buckets().front().handles.front();
  CHECK_THROWS_WITH(buckets.grad_written(ctx, h), Contains(params.entry(h).name) &&
                                                      Contains("after its bucket") &&
                                                      Contains("all_reduce_bucket_mb = 0"));
  buckets.flush(ctx, true);
  // Outside a step (flush stopped listening) writes are not counted.
  CHECK_NOTHROW(buckets.grad_written(ctx, h));
}

TEST_CASE("After a failed backward only the gradients outside started buckets are zeroed",
          "[buckets]") {
  Context ctx;
  auto model = test::fixture_model(ctx);
  auto& params = model->dense_params();
  RecordingComm comm;
  train::GradientBuckets buckets(params, comm, 64);
  REQUIRE(buckets.buckets().size() >= 3);
  std::vector<float> ones(static_cast<size_t>(params.size()), 1.0f);
  std::copy(ones.begin(), ones.end(), params.grads());
  // Learn that every parameter is written once, then start buckets 0 and 1 by hand.
  buckets.begin_step();
  for (size_t h = 0; h < params.entries().size(); ++h)
    buckets.grad_written(ctx, static_cast<int>(h));
  buckets.flush(ctx, true);
  comm.starts.clear();
  buckets.begin_step();
  for (int b = 0; b < 2; ++b)
    for (const int h : buckets.buckets()[static_cast<size_t>(b)].handles)
      buckets.grad_written(ctx, h);
  REQUIRE(comm.starts.size() == 2);
  buckets.zero_unstarted(ctx);
  const int64_t kept_begin = buckets.buckets()[1].begin;
  for (int64_t i = 0; i < params.size(); ++i) {
    const bool kept = i >= kept_begin && i < buckets.covered();
    if (params.grads()[i] != (kept ? 1.0f : 0.0f)) FAIL("element " << i);
  }
  buckets.flush(ctx, false);
  CHECK(comm.starts.size() == buckets.buckets().size());
}

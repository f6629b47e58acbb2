// The lockstep Trainer in one process (local communicator): step semantics, collectives per
// step, failures, checkpoints and bitwise resume. Multi-rank behaviour: test/mpi/trainer_test.cpp.
#include <catch2/catch.hpp>

#include <csignal>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data_test_util.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/failure.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"
#include "log_capture.h"
#include "model_fixture.h"
#include "train/fault_injection.h"

using namespace lockstep;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

train::TrainerConfig quiet() {
  train::TrainerConfig c;
  c.log_every = 0;
  c.handle_signals = true;
  return c;
}
}  // namespace

TEST_CASE("Trainer on one rank matches LocalTrainer bitwise, one all-reduce per step",
          "[train][trainer]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto a = test::fixture_model(ctx, nn::ActivationKind::Dice);
  auto b = test::fixture_model(ctx, nn::ActivationKind::Dice);
  auto data = test::fixture_batches(7, 32);
  data.back() = test::fixture_batch(1000, 5);  // a partial last batch
  train::Trainer trainer(*a, *comm, ctx, quiet());
  train::VectorBatchSource source(data);
  const int64_t reduces_before = comm->stats().all_reduce;
  const auto result = trainer.fit(source);
  CHECK(result.steps == 7);
  CHECK(result.updates == 7);
  CHECK(result.samples == 6 * 32 + 5);
  CHECK(comm->stats().all_reduce - reduces_before == 7);  // exactly one per step

  train::LocalTrainer<float> local(*b, ctx);
  double loss = 0;
  for (const auto& batch : data) loss += local.step(batch);
  CHECK(result.loss_sum == Approx(loss).epsilon(1e-6));
  test::require_bitwise_equal(test::all_state(ctx, *a), test::all_state(ctx, *b),
                              "Trainer vs LocalTrainer");
}

TEST_CASE(
    "Staging ahead on or off: the same bits; every step but the first begins on a batch "
    "staged ahead",
    "[train][trainer][stage-ahead]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto data = test::fixture_batches(6, 32);
  data.back() = test::fixture_batch(1000, 5);  // a partial last batch: staged ahead too
  std::vector<std::vector<float>> states;
  for (const bool ahead : {true, false}) {
    INFO("stage_ahead " << ahead);
    auto model = test::fixture_din(ctx);
    train::TrainerConfig config = quiet();
    config.stage_ahead = ahead;
    config.epochs = 2;
    train::Trainer trainer(*model, *comm, ctx, config);
    train::VectorBatchSource source(data);
    const auto result = trainer.fit(source);
    CHECK(result.steps == 12);
    // Each epoch's first step stages its own batch (its source starts there).
    CHECK(result.steps_staged_ahead == (ahead ? 10u : 0u));
    states.push_back(test::all_state(ctx, *model));
  }
  test::require_bitwise_equal(states[0], states[1], "stage_ahead on vs off");
}

TEST_CASE("An empty shard runs one step, applies nothing and stops", "[train][trainer]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  const auto before = test::all_state(ctx, *model);
  train::Trainer trainer(*model, *comm, ctx, quiet());
  train::VectorBatchSource empty({});
  const auto r = trainer.fit(empty);
  CHECK(r.steps == 1);
  CHECK(r.updates == 0);
  CHECK(r.samples == 0);
  test::require_bitwise_equal(test::all_state(ctx, *model), before, "no update on no data");
}

TEST_CASE("An epoch without data after one with data warns that the source may not rewind",
          "[train][trainer]") {
  // A BatchSource whose start_epoch() forgets to rewind: epoch 2 finds it exhausted.
  class NoRewind final : public train::BatchSource {
   public:
    explicit NoRewind(std::vector<data::Batch> b) : batches_(std::move(b)) {}
    void start_epoch(int64_t) override {}
    bool next(data::Batch& out) override {
      if (pos_ >= batches_.size()) return false;
      out = batches_[pos_++];
      return true;
    }

   private:
    std::vector<data::Batch> batches_;
    size_t pos_ = 0;
  };
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  auto config = quiet();
  config.epochs = 3;
  {
    train::Trainer trainer(*model, *comm, ctx, config);
    NoRewind source(test::fixture_batches(2, 16));
    const test::LogCapture log;
    const auto r = trainer.fit(source);
    CHECK(r.samples == 32);
    CHECK_THAT(log.text(), Contains("epoch 2 trained no samples on any rank, epoch 1 trained 32") &&
                               Contains("rewind in start_epoch()"));
    CHECK_THAT(log.text(), !Contains("epoch 3 trained no samples"));  // once, where it begins
  }
  // A source that rewinds: no such warning.
  train::Trainer trainer(*model, *comm, ctx, config);
  train::VectorBatchSource rewinds(test::fixture_batches(2, 16));
  const test::LogCapture log;
  CHECK(trainer.fit(rewinds).samples == 96);
  CHECK_THAT(log.text(), !Contains("rewind"));
}

TEST_CASE("A failing step raises one clear error", "[train][trainer][errors]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  auto cfg = quiet();
  train::testing::FaultScope fault("fail:0:2");
  train::Trainer trainer(*model, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(5, 8));
  CHECK_THROWS_WITH(trainer.fit(source),
                    Contains("step 2 failed on rank 0") && Contains("injected test fault"));
  CHECK_THROWS_WITH(train::FaultInjection::parse("sleep:1:5"), Contains("sleep needs seconds"));
  CHECK_THROWS_WITH(train::FaultInjection::parse("melt:1:5"), Contains("unknown kind 'melt'"));
}

TEST_CASE("Checkpoint, stop on SIGTERM and resume give the uninterrupted parameters bitwise",
          "[train][trainer][checkpoint]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  // Hashed tables, or dynamic ones (feasign store) small enough to evict, with shrinks at the
  // epoch's end: the key set, the statistics and the slots resume bitwise too.
  const bool dynamic = GENERATE(false, true);
  INFO((dynamic ? "dynamic tables" : "hashed tables"));
  embedding::AccessorConfig accessor;
  accessor.embedx_threshold = 1.5f;
  const auto make = [&]() -> std::unique_ptr<models::Model<float>> {
    if (!dynamic) return test::fixture_model(ctx, nn::ActivationKind::Dice);
    return test::fixture_dynamic_model(ctx, accessor, 60, 150);
  };
  const auto data = test::fixture_batches(6, 16);
  auto cfg = quiet();
  cfg.epochs = 2;

  auto reference = make();
  {
    train::Trainer trainer(*reference, *comm, ctx, cfg);
    train::VectorBatchSource source(data);
    trainer.fit(source);
  }

  // Stopped mid-epoch, or on an epoch's last step (its checkpoint comes before the epoch's end:
  // boundary, evaluation): the resume goes on exactly where the uninterrupted run went.
  const int stop_at = GENERATE(8, 5);  // epoch 2 batch 3; epoch 1's last step
  INFO("SIGTERM at step " << stop_at);
  auto cfg_stop = cfg;
  cfg_stop.checkpoint_dir = dir.file("ckpt");
  cfg_stop.checkpoint_every = 4;
  {
    train::testing::FaultScope fault(fmt::format("sigterm:0:{}", stop_at));
    auto model = make();
    train::Trainer trainer(*model, *comm, ctx, cfg_stop);
    train::VectorBatchSource source(data);
    const auto r = trainer.fit(source);
    CHECK(r.stopped);
    CHECK(r.steps == static_cast<uint64_t>(stop_at) + 1);
    CHECK_THAT(r.last_checkpoint, Contains(fmt::format("step-{:012d}", stop_at + 1)));
    CHECK(train::read_checkpoint_meta(r.last_checkpoint).epoch_complete == (stop_at == 5));
  }
  auto cfg_resume = cfg;
  cfg_resume.checkpoint_dir = dir.file("ckpt");
  cfg_resume.resume = true;
  auto resumed = make();
  train::Trainer trainer(*resumed, *comm, ctx, cfg_resume);
  train::VectorBatchSource source(data);
  const auto r = trainer.fit(source);
  CHECK(r.steps == static_cast<uint64_t>(12 - stop_at - 1));  // no step without data
  CHECK(trainer.step() == 12);
  test::require_bitwise_equal(test::all_state(ctx, *resumed), test::all_state(ctx, *reference),
                              "resumed vs uninterrupted");
}

TEST_CASE(
    "A periodic checkpoint on an epoch's last step resumes with the epoch's end; the run's "
    "last checkpoint is its final state",
    "[train][trainer][checkpoint]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  embedding::AccessorConfig accessor;  // dynamic tables: the epoch's end shrinks them
  accessor.embedx_threshold = 1.5f;
  accessor.delete_threshold = 1.0f;
  const auto data = test::fixture_batches(6, 16);
  auto cfg = quiet();
  cfg.epochs = 2;
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.checkpoint_every = 6;  // every epoch's last step
  auto reference = test::fixture_dynamic_model(ctx, accessor, 60, 150);
  {
    train::Trainer trainer(*reference, *comm, ctx, cfg);
    train::VectorBatchSource source(data);
    trainer.fit(source);
  }
  const std::string first = dir.file("ckpt/step-000000000006");
  const std::string last = dir.file("ckpt/step-000000000012");
  const auto meta = train::read_checkpoint_meta(first);
  CHECK(meta.epoch_complete);
  CHECK(meta.epoch == 0);
  CHECK(meta.epoch_samples == 6 * 16);
  // The last one was written after the final shrink: it is the model, marked finished.
  const auto final_meta = train::read_checkpoint_meta(last);
  CHECK_FALSE(final_meta.epoch_complete);
  CHECK(final_meta.epoch == 2);
  {
    auto loaded = test::fixture_dynamic_model(ctx, accessor, 60, 150);
    train::read_checkpoint(last, *loaded, ctx, 0);
    test::require_bitwise_equal(test::all_state(ctx, *loaded), test::all_state(ctx, *reference),
                                "last checkpoint vs the trained model");
  }
  // A crash after the first: resumed from it, the same run.
  std::filesystem::remove_all(last);
  write_file_atomically(dir.file("ckpt/LATEST"), "step-000000000006\n");
  cfg.resume = true;
  auto resumed = test::fixture_dynamic_model(ctx, accessor, 60, 150);
  train::Trainer trainer(*resumed, *comm, ctx, cfg);
  train::VectorBatchSource source(data);
  const auto r = trainer.fit(source);
  CHECK(r.steps == 6);
  CHECK(trainer.step() == 12);
  test::require_bitwise_equal(test::all_state(ctx, *resumed), test::all_state(ctx, *reference),
                              "resumed from the epoch's last step vs uninterrupted");
}

TEST_CASE("A corrupted or truncated checkpoint is refused; the previous one stays usable",
          "[train][trainer][checkpoint][errors]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.checkpoint_every = 2;
  auto model = test::fixture_model(ctx);
  {
    train::Trainer trainer(*model, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(4, 8));
    trainer.fit(source);  // checkpoints at steps 2 and 4
  }
  const std::string latest = train::latest_checkpoint(cfg.checkpoint_dir);
  REQUIRE_THAT(latest, Contains("step-000000000004"));
  const fs::path previous = fs::path(cfg.checkpoint_dir) / "step-000000000002";
  REQUIRE(fs::exists(previous / "manifest.json"));
  const auto intact = test::all_state(ctx, *model);

  const fs::path tables = fs::path(latest) / "tables.safetensors";
  const auto good_size = fs::file_size(tables);
  {  // flip one byte in the middle of the table data
    std::fstream f(tables, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(good_size / 2));
    char c;
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(static_cast<std::streamoff>(good_size / 2));
    f.write(&c, 1);
  }
  auto fresh = test::fixture_model(ctx);
  const auto fresh_before = test::all_state(ctx, *fresh);
  CHECK_THROWS_WITH(train::read_checkpoint(latest, *fresh, ctx, 0),
                    Contains("tables.safetensors") && Contains("corrupted"));
  test::require_bitwise_equal(test::all_state(ctx, *fresh), fresh_before, "model untouched");

  fs::resize_file(tables, good_size - 100);
  CHECK_THROWS_WITH(train::read_checkpoint(latest, *fresh, ctx, 0), Contains("truncated"));
  auto resume_cfg = cfg;
  resume_cfg.resume = true;
  train::Trainer trainer(*fresh, *comm, ctx, resume_cfg);
  train::VectorBatchSource source(test::fixture_batches(4, 8));
  CHECK_THROWS_WITH(trainer.fit(source), Contains("truncated"));

  // The previous checkpoint is intact and loads.
  const auto meta = train::read_checkpoint(previous.string(), *fresh, ctx, 0);
  CHECK(meta.step == 2);
  CHECK(meta.updates == 2);
}

TEST_CASE("Checkpoints keep only the newest ones", "[train][checkpoint]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.checkpoint_every = 1;
  cfg.keep_checkpoints = 2;
  auto model = test::fixture_model(ctx);
  train::Trainer trainer(*model, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(5, 4));
  trainer.fit(source);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(cfg.checkpoint_dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"LATEST", "step-000000000004", "step-000000000005"});
}

TEST_CASE("Outputs are checked before step 1: an unwritable checkpoint directory or metrics file",
          "[train][trainer][errors]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  test::TempDir dir;
  {
    std::ofstream blocker(dir.file("blocker"));  // a file where a directory is needed
    blocker << "x";
  }
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("blocker") + "/ckpt";
  CHECK_THROWS_WITH(train::Trainer(*model, *comm, ctx, cfg),
                    Contains("start-up failed on rank(s) 0") &&
                        Contains("the checkpoint directory '" + cfg.checkpoint_dir +
                                 "' is not writable"));
  auto cfg_metrics = quiet();
  cfg_metrics.metrics_path = dir.file("blocker") + "/metrics.jsonl";
  CHECK_THROWS_WITH(train::Trainer(*model, *comm, ctx, cfg_metrics),
                    Contains("cannot open the metrics file"));
  CHECK_FALSE(fs::exists(cfg.checkpoint_dir));
}

TEST_CASE("Resuming a run that already finished trains nothing and writes nothing",
          "[train][trainer][checkpoint]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.epochs = 2;
  cfg.checkpoint_dir = dir.file("ckpt");
  auto trained = test::fixture_model(ctx, nn::ActivationKind::Dice);
  {
    train::Trainer trainer(*trained, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(3, 8));
    trainer.fit(source);
  }
  const auto listing = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(cfg.checkpoint_dir))
      names.push_back(e.path().string() + ":" +
                      std::to_string(fs::last_write_time(e.path()).time_since_epoch().count()));
    std::sort(names.begin(), names.end());
    return names;
  };
  const auto before = listing();
  auto resumed = test::fixture_model(ctx, nn::ActivationKind::Dice);
  auto cfg_resume = cfg;
  cfg_resume.resume = true;
  train::Trainer trainer(*resumed, *comm, ctx, cfg_resume);
  train::VectorBatchSource source(test::fixture_batches(3, 8));
  train::VectorBatchSource held_out(test::fixture_batches(2, 8, 1000));
  const auto r = trainer.fit(source, &held_out);
  CHECK(r.already_finished);
  CHECK(r.steps == 0);
  CHECK(r.updates == 0);
  CHECK(r.last_eval.samples == 16);
  CHECK(trainer.step() == 6);
  CHECK(listing() == before);
  test::require_bitwise_equal(test::all_state(ctx, *resumed), test::all_state(ctx, *trained),
                              "resumed finished run vs the run that wrote it");
}

TEST_CASE("Resuming without a checkpoint is an error; resume_or_start starts from the beginning",
          "[train][trainer][checkpoint]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("empty");
  cfg.resume = true;
  auto model = test::fixture_model(ctx);
  const auto before = test::all_state(ctx, *model);
  {
    train::Trainer trainer(*model, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(2, 8));
    CHECK_THROWS_WITH(trainer.fit(source), Contains("resuming failed on rank(s) 0") &&
                                               Contains("there is no checkpoint in '" +
                                                        cfg.checkpoint_dir + "'"));
  }
  test::require_bitwise_equal(test::all_state(ctx, *model), before, "nothing trained");
  cfg.resume = false;
  cfg.resume_or_start = true;
  train::Trainer trainer(*model, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(2, 8));
  const auto r = trainer.fit(source);
  CHECK(r.steps == 2);
  CHECK(r.updates == 2);
}

TEST_CASE("A resume refused for another configuration names the first difference",
          "[train][trainer][checkpoint][errors]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.run_config = "--batch-size=8\n--train file=a.csv bytes=100\n--train file=b.csv bytes=200\n";
  {
    auto model = test::fixture_model(ctx);
    train::Trainer trainer(*model, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(2, 8));
    trainer.fit(source);
  }
  cfg.resume = true;
  const auto refused = [&](const std::string& run_config) {
    cfg.run_config = run_config;
    auto model = test::fixture_model(ctx);
    train::Trainer trainer(*model, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(2, 8));
    try {
      trainer.fit(source);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(resumed)");
  };
  CHECK_THAT(refused("--batch-size=16\n--train file=a.csv bytes=100\n--train file=b.csv "
                     "bytes=200\n"),
             Contains("written by a run with another configuration (--batch-size: '8' in the "
                      "checkpoint, '16' in this run)"));
  // The second of two files grew: named entry by entry.
  CHECK_THAT(refused("--batch-size=8\n--train file=a.csv bytes=100\n--train file=b.csv "
                     "bytes=201\n"),
             Contains("--train file (#2): 'b.csv bytes=200' in the checkpoint, 'b.csv bytes=201' "
                      "in this run"));
  CHECK_THAT(refused("--batch-size=8\n--set=x=1\n--train file=a.csv bytes=100\n--train "
                     "file=b.csv bytes=200\n"),
             Contains("--set: (absent) in the checkpoint, 'x=1' in this run"));
  CHECK(refused("--batch-size=8\n--train file=a.csv bytes=100\n--train file=b.csv bytes=200\n") ==
        "(resumed)");
}

TEST_CASE("A failure on one rank only is thrown there; the library exits only when asked",
          "[train][trainer][failure]") {
  // Without abort_on_error the library never ends the job: a device lost on this rank is thrown
  // on this rank as a DeviceError (exit code 4 in the tools, which set abort_on_error; the abort
  // itself is tested with lockstep-train under mpirun, test/CMakeLists.txt "mpi: fault: ...").
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx, nn::ActivationKind::PReLU);
  {
    train::testing::FaultScope fault("device:0:1");
    train::Trainer trainer(*model, *comm, ctx, quiet());
    train::VectorBatchSource source(test::fixture_batches(3, 8));
    try {
      trainer.fit(source);
      FAIL("no DeviceError");
    } catch (const DeviceError& e) {
      CHECK_THAT(e.what(), Contains("injected device failure (rank 0, step 1)"));
      CHECK(train::exit_code_for(e) == train::kExitDeviceError);
      CHECK_FALSE(train::raised_on_every_rank(e));
    }
  }
  // An error in the forward pass is reported through the step: every rank raises it together.
  train::testing::FaultScope fault("error:0:1");
  train::Trainer trainer(*model, *comm, ctx, quiet());
  train::VectorBatchSource source(test::fixture_batches(3, 8));
  try {
    trainer.fit(source);
    FAIL("no JobError");
  } catch (const JobError& e) {
    CHECK_THAT(e.what(), Contains("lockstep step 1 failed on rank(s) 0: rank 0: forward/backward "
                                  "failed: injected error (rank 0, step 1)"));
    CHECK(train::exit_code_for(e) == train::kExitError);
    CHECK(train::raised_on_every_rank(e));
  }
}

TEST_CASE("Signal handlers are installed only when asked", "[train][trainer][signals]") {
  // The library installs none by default (TrainerConfig::handle_signals = false): during fit()
  // SIGTERM keeps the process's own handler unless the driver opts in.
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx, nn::ActivationKind::PReLU);
  for (const bool opt_in : {false, true}) {
    train::TrainerConfig c;
    c.log_every = 0;
    c.handle_signals = opt_in;
    train::Trainer trainer(*model, *comm, ctx, c);
    struct sigaction before {}, during {};
    sigaction(SIGTERM, nullptr, &before);  // Catch2's own handler, here
    trainer.on_step([&](const train::StepInfo&) { sigaction(SIGTERM, nullptr, &during); });
    train::VectorBatchSource source(test::fixture_batches(1, 8));
    trainer.fit(source);
    const auto handler = [](const struct sigaction& a) {
      return (a.sa_flags & SA_SIGINFO) ? reinterpret_cast<void*>(a.sa_sigaction)
                                       : reinterpret_cast<void*>(a.sa_handler);
    };
    CHECK((handler(during) == handler(before)) == !opt_in);
  }
  CHECK_FALSE(train::TrainerConfig{}.abort_on_error);
}

TEST_CASE(
    "Only a Trainer's first fit() resumes; a later one trains on from memory, with the "
    "driver's checkpoint file",
    "[train][trainer][checkpoint][resume]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.resume_or_start = true;
  auto model = test::fixture_model(ctx);
  train::Trainer trainer(*model, *comm, ctx, cfg);
  train::VectorBatchSource first(test::fixture_batches(2, 8));
  trainer.set_checkpoint_extra("follow.txt", "round\tfirst\n");
  CHECK(trainer.fit(first).updates == 2);  // no checkpoint yet: starts; writes one at the end
  // Before: the second fit() resumed that (finished) checkpoint and trained nothing.
  train::VectorBatchSource second(test::fixture_batches(3, 8, 100));
  trainer.set_checkpoint_extra("follow.txt", "done\tfirst\nround\tsecond\n");
  const auto r = trainer.fit(second);
  CHECK(!r.already_finished);
  CHECK(r.updates == 3);
  CHECK(trainer.updates() == 5);
  const std::string latest = train::latest_checkpoint(cfg.checkpoint_dir);
  CHECK(train::read_checkpoint_extra(latest, "follow.txt") == "done\tfirst\nround\tsecond\n");
  CHECK_THROWS_WITH(trainer.set_checkpoint_extra("notes.txt", "x"), Contains("notes.txt"));
}

TEST_CASE(
    "What a driver hands the library is checked: batch values and layout, model_files, "
    "export columns, a finished run's later checkpoint",
    "[train][trainer][errors]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  test::TempDir dir;
  auto model = test::fixture_model(ctx);
  train::LocalTrainer<float> local(*model, ctx);
  // A batch from the driver's own source has not met the file readers' checks.
  auto bad = test::fixture_batch(0, 8);
  bad.labels[3] = -1.0f;
  CHECK_THROWS_WITH(local.step(bad), Contains("batch sample 3: label -1 is outside [0, 1]"));
  bad = test::fixture_batch(0, 8);
  bad.dense[5] = NAN;
  CHECK_THROWS_WITH(local.step(bad), Contains("batch sample 1: dense value 2 is nan"));
  bad = test::fixture_batch(0, 8);
  bad.sparse.insert(bad.sparse.begin(), bad.sparse[1]);  // a stray column first
  CHECK_THROWS_WITH(local.step(bad), Contains("batch has 4 sparse columns; the model reads 3 "
                                              "(user, item, hist), in that order"));
  CHECK_NOTHROW(local.step(test::fixture_batch(0, 8)));

  // model_files names are checked when the Trainer is made, not at its first checkpoint.
  auto cfg = quiet();
  cfg.checkpoint_dir = dir.file("ckpt");
  cfg.model_files["schema.tml"] = "";
  CHECK_THROWS_WITH(train::Trainer(*model, *comm, ctx, cfg),
                    Contains("model_files: 'schema.tml' is not a checkpoint file"));
  cfg.model_files.clear();

  // save_checkpoint() after a completed fit() marks the run finished, as fit()'s own did.
  {
    train::Trainer trainer(*model, *comm, ctx, cfg);
    train::VectorBatchSource source(test::fixture_batches(3, 8));
    trainer.fit(source);
    const std::string path = trainer.save_checkpoint();
    CHECK(train::read_checkpoint_meta(path).epoch == cfg.epochs);
  }
  cfg.resume = true;
  train::Trainer again(*model, *comm, ctx, cfg);
  train::VectorBatchSource source(test::fixture_batches(3, 8));
  CHECK(again.fit(source).already_finished);

  // The student bundle's columns must be the model's, in order.
  auto dual = test::fixture_dual(ctx);
  CHECK_THROWS_WITH(dual->export_student(ctx, dir.file("student"), {"item", "user", "hist"}),
                    Contains("export_student: the sparse columns given (item, user, hist) are not "
                             "the model's, in its order (user, item, hist)"));
  dual->export_student(ctx, dir.file("student"), test::fixture_columns());
  // ... and a bundle is not a saved model: said so.
  CHECK_THROWS_WITH(train::read_checkpoint_meta(dir.file("student")),
                    Contains("the manifest of a student bundle") &&
                        Contains("lockstep-predict --bundle scores with it"));
}

TEST_CASE("Single-tower inference evaluates only the tower that runs", "[train][trainer][dual]") {
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto dual = test::fixture_dual(ctx);
  train::Trainer trainer(*dual, *comm, ctx, quiet());
  train::VectorBatchSource data(test::fixture_batches(4, 32));
  trainer.fit(data);
  train::VectorBatchSource held_out(test::fixture_batches(2, 64));
  const train::EvalResult both = trainer.evaluate(held_out);
  REQUIRE(both.output_names == std::vector<std::string>{"student", "teacher"});
  for (const auto out :
       {models::DualDnn<float>::Output::Student, models::DualDnn<float>::Output::Teacher}) {
    dual->set_output(out);
    dual->set_single_tower_inference(true);
    const train::EvalResult one = trainer.evaluate(held_out);
    const std::string name = out == models::DualDnn<float>::Output::Student ? "student" : "teacher";
    INFO(name);
    REQUIRE(one.output_names == std::vector<std::string>{name});  // not a stale other tower
    CHECK(one.outputs[0].auc == both.output(name)->auc);
    CHECK(one.outputs[0].logloss == both.output(name)->logloss);
  }
  dual->set_single_tower_inference(false);
  dual->set_output(models::DualDnn<float>::Output::Student);
}

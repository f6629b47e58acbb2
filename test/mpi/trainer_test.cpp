// The lockstep step across ranks (run under mpirun with 2, 3 and 4 ranks): uneven data,
// exactly-once sample accounting, bitwise-identical replicas, equivalence with one rank fed the
// union of each step's batches, one dense collective per step, divergence and failure errors,
// checkpoint/resume.
#include <catch2/catch.hpp>
#include <mpi.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include "lockstep/comm/communicator.h"
#include "lockstep/train/failure.h"
#include "lockstep/train/trainer.h"
#include "train/fault_injection.h"
#include "test_util.h"
#include "model_fixture.h"
#include "lockstep/data/text_format.h"
#include "lockstep/train/batch_source.h"
#include "test/unit/data_test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

train::TrainerConfig quiet() {
  train::TrainerConfig c;
  c.log_every = 0;
  return c;
}

/// Batch sizes of every rank: sizes[r] lists rank r's batches. Sample ids are unique across all
/// batches of all ranks.
struct Plan {
  std::vector<std::vector<int64_t>> sizes;
  std::vector<data::Batch> batches_of(int rank) const {
    uint64_t id = 0;
    std::vector<data::Batch> out;
    for (size_t r = 0; r < sizes.size(); ++r)
      for (int64_t n : sizes[r]) {
        if (static_cast<int>(r) == rank) out.push_back(test::fixture_batch(id, n));
        id += static_cast<uint64_t>(n);
      }
    return out;
  }
  /// Σ id and Σ id² over every sample of every rank.
  std::pair<double, double> id_moments() const {
    double s = 0, s2 = 0;
    uint64_t id = 0;
    for (const auto& rank : sizes)
      for (int64_t n : rank)
        for (int64_t i = 0; i < n; ++i, ++id) {
          s += static_cast<double>(id);
          s2 += static_cast<double>(id) * static_cast<double>(id);
        }
    return {s, s2};
  }
  size_t max_batches() const {
    size_t m = 0;
    for (const auto& r : sizes) m = std::max(m, r.size());
    return m;
  }
};

struct RunResult {
  train::FitResult fit;
  double id_sum = 0, id_sq = 0;  // over samples this rank trained on
  uint64_t hash = 0;
  std::vector<float> state;
};

using ModelFactory = std::function<std::unique_ptr<models::Model<float>>(const Context&)>;

RunResult run_model(const Plan& plan, comm::Communicator& comm, train::TrainerConfig cfg,
                    const ModelFactory& make) {
  Context ctx(Device::cpu(), ContextOptions{false, 0, 7});
  auto model = make(ctx);
  train::Trainer trainer(*model, comm, ctx, cfg);
  RunResult out;
  trainer.on_step([&](const train::StepInfo& info) {
    for (uint64_t id : info.batch->sample_ids) {
      out.id_sum += static_cast<double>(id);
      out.id_sq += static_cast<double>(id) * static_cast<double>(id);
    }
  });
  train::VectorBatchSource source(plan.batches_of(comm.rank()));
  out.fit = trainer.fit(source);
  out.state = test::all_state(ctx, *model);
  out.hash = test::state_hash(ctx, *model);
  return out;
}

RunResult run_plan(const Plan& plan, comm::Communicator& comm, train::TrainerConfig cfg = quiet(),
                   nn::ActivationKind act = nn::ActivationKind::PReLU) {
  return run_model(plan, comm, cfg, [act](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
    return test::fixture_model(ctx, act);
  });
}

/// Asserts the exactly-once accounting and identical replicas across ranks.
void check_run(const Plan& plan, const RunResult& r) {
  double local[2] = {r.id_sum, r.id_sq}, total[2];
  MPI_Allreduce(local, total, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const auto [s, s2] = plan.id_moments();
  CHECK(total[0] == s);   // every sample used exactly once ...
  CHECK(total[1] == s2);  // ... (sum and sum of squares of ids)
  CHECK(r.fit.updates == plan.max_batches());
  CHECK(r.fit.steps == std::max<size_t>(plan.max_batches(), 1));
  uint64_t hashes_min = 0, hashes_max = 0;
  MPI_Allreduce(&r.hash, &hashes_min, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&r.hash, &hashes_max, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  CHECK(hashes_min == hashes_max);  // replicas bitwise identical
}
}  // namespace

TEST_CASE("Uneven shards: every rank leaves at the same step, each sample used once",
          "[trainer][uneven]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  const int P = comm->size();
  SECTION("shards of {0, 1, 7} batches") {
    Plan plan;
    const int64_t counts[3] = {0, 1, 7};
    for (int r = 0; r < P; ++r) plan.sizes.push_back(std::vector<int64_t>(counts[r % 3], 16));
    check_run(plan, run_plan(plan, *comm));
  }
  SECTION("rank r gets K + r batches, the last one partial") {
    Plan plan;
    for (int r = 0; r < P; ++r) {
      std::vector<int64_t> s(3 + r, 12);
      s.back() = 5 + r;
      plan.sizes.push_back(s);
    }
    check_run(plan, run_plan(plan, *comm, quiet(), nn::ActivationKind::Dice));
  }
  SECTION("every rank empty") {
    Plan plan;
    plan.sizes.assign(P, {});
    const auto r = run_plan(plan, *comm);
    check_run(plan, r);
    CHECK(r.fit.samples == 0);
  }
}

TEST_CASE("DIN, BST and the dual DNN train under the lockstep trainer with uneven shards", "[trainer][uneven][sequence]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) {
    std::vector<int64_t> s(2 + 2 * r, 9);
    s.back() = 4;  // a partial last batch
    plan.sizes.push_back(s);
  }
  SECTION("DIN") {
    check_run(plan, run_model(plan, *comm, quiet(), [](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_din(ctx);
    }));
  }
  SECTION("dual DNN (teacher with Dice statistics, student, distillation)") {
    check_run(plan, run_model(plan, *comm, quiet(), [](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_dual(ctx);
    }));
  }
  SECTION("BST with dropout") {
    check_run(plan, run_model(plan, *comm, quiet(), [](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_bst(ctx);
    }));
  }
}

TEST_CASE("Dynamic tables: replicas stay bitwise identical under uneven shards; admission "
          "from the counts of every rank",
          "[trainer][uneven][dynamic]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  const int P = comm->size();
  SECTION("embedding_mlp (tables evicting), DIN and the dual DNN (a shrink at the epoch's end)") {
    Plan plan;
    for (int r = 0; r < P; ++r) {
      std::vector<int64_t> s(2 + 2 * r, 9);
      s.back() = 4;
      plan.sizes.push_back(s);
    }
    embedding::AccessorConfig a;
    a.embedx_threshold = 1.5f;
    const auto cfg = quiet();
    check_run(plan, run_model(plan, *comm, cfg, [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_dynamic_model(ctx, a, 60, 120);
    }));
    check_run(plan, run_model(plan, *comm, cfg, [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_din(ctx, &a);
    }));
    check_run(plan, run_model(plan, *comm, cfg, [&](const Context& ctx) -> std::unique_ptr<models::Model<float>> {
      return test::fixture_dual(ctx, models::DualMode::Joint, &a);
    }));
  }
  SECTION("a key seen once on each rank is admitted on every rank") {
    // score = shows; admitted at P shows: key 7 is shown once on every rank (P in all), key 8
    // only on rank 0 (1 in all).
    embedding::AccessorConfig a;
    a.nonclk_coeff = 1.0f;
    a.click_coeff = 1.0f;
    a.embedx_threshold = static_cast<float>(P);
    data::Batch b = test::fixture_batch(static_cast<uint64_t>(comm->rank()) * 10, 2);
    const uint64_t own = comm->rank() == 0 ? 8 : static_cast<uint64_t>(9 + comm->rank());
    b.sparse[0].keys = {7, own};
    Context ctx;
    auto model = test::fixture_dynamic_model(ctx, a);
    train::Trainer trainer(*model, *comm, ctx, quiet());
    train::VectorBatchSource source({b});
    trainer.fit(source);
    const auto* user = model->tables()[0]->dynamic_table();
    const int64_t s7 = user->index().find(7), s8 = user->index().find(8);
    REQUIRE(s7 >= 0);
    REQUIRE(s8 >= 0);  // held on every rank, though only rank 0 saw it
    CHECK(user->stats(s7).show == static_cast<float>(P) * a.show_click_decay_rate);  // epoch end
    CHECK(user->admitted(s7));
    CHECK(user->admitted(s8) == (P == 1));
    CHECK(user->size() == P + 1);
    const uint64_t h = test::state_hash(ctx, *model);
    uint64_t lo = 0, hi = 0;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
  }
}

TEST_CASE("Student-only training on several ranks leaves the teacher and its statistics bitwise",
          "[trainer][dual]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) plan.sizes.push_back(std::vector<int64_t>(3 + r, 10));
  Context ctx;
  auto model = test::fixture_dual(ctx, models::DualMode::StudentOnly);
  auto& ps = model->dense_params();
  const auto before = to_host(ctx, ps.values(), ps.size());
  train::Trainer trainer(*model, *comm, ctx, quiet());
  train::VectorBatchSource source(plan.batches_of(comm->rank()));
  trainer.fit(source);
  const auto after = to_host(ctx, ps.values(), ps.size());
  // Teacher parameters [0, student_begin) and non-trainable state [trainable_size, size).
  test::require_bitwise_equal(std::vector<float>(after.begin(), after.begin() + model->student_begin()),
                              std::vector<float>(before.begin(), before.begin() + model->student_begin()),
                              "teacher parameters");
  test::require_bitwise_equal(std::vector<float>(after.begin() + ps.trainable_size(), after.end()),
                              std::vector<float>(before.begin() + ps.trainable_size(), before.end()),
                              "teacher Dice statistics");
  CHECK(std::vector<float>(after.begin() + model->student_begin(), after.begin() + ps.trainable_size()) !=
        std::vector<float>(before.begin() + model->student_begin(), before.begin() + ps.trainable_size()));
}

TEST_CASE("Exactly one dense all-reduce per step", "[trainer][collectives]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Context ctx;
  auto model = test::fixture_model(ctx);
  train::Trainer trainer(*model, *comm, ctx, quiet());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) plan.sizes.push_back(std::vector<int64_t>(4 + r, 8));
  train::VectorBatchSource source(plan.batches_of(comm->rank()));
  const auto before = comm->stats();
  const auto fit = trainer.fit(source);
  CHECK(fit.steps == plan.max_batches());
  CHECK(comm->stats().all_reduce - before.all_reduce == static_cast<int64_t>(fit.steps));
  // The sparse exchange is the only other collective of a step.
  CHECK(comm->stats().all_gather - before.all_gather <= static_cast<int64_t>(fit.steps));
  CHECK(comm->stats().broadcast == before.broadcast);
  CHECK(comm->stats().barrier == before.barrier);
}

TEST_CASE("Dense gradients summed in buckets during the backward give the bits of one all-reduce",
          "[trainer][buckets]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) {
    std::vector<int64_t> s(3 + r, 11);
    s.back() = 3;
    plan.sizes.push_back(s);
  }
  const std::pair<const char*, ModelFactory> cases[] = {
      {"embedding_mlp",
       [](const Context& c) -> std::unique_ptr<models::Model<float>> {
         return test::fixture_model(c, nn::ActivationKind::Dice);
       }},
      {"din",
       [](const Context& c) -> std::unique_ptr<models::Model<float>> {
         return test::fixture_din(c);
       }},
      {"bst",
       [](const Context& c) -> std::unique_ptr<models::Model<float>> {
         return test::fixture_bst(c);
       }},
      {"dual",
       [](const Context& c) -> std::unique_ptr<models::Model<float>> {
         return test::fixture_dual(c);
       }},
  };
  for (const auto& [name, make] : cases) {
    INFO(name);
    std::vector<uint64_t> hashes;
    for (const double mb : {0.0, 1e-6, 0.001, 1.0}) {  // none, one per parameter, a few, one
      auto cfg = quiet();
      cfg.all_reduce_bucket_mb = mb;
      const auto before = comm->stats();
      const RunResult r = run_model(plan, *comm, cfg, make);
      check_run(plan, r);
      const int64_t started = comm->stats().all_reduce_started - before.all_reduce_started;
      if (mb == 0.0) CHECK(started == 0);
      if (mb > 0.0) CHECK(started >= static_cast<int64_t>(r.fit.steps));
      hashes.push_back(r.hash);
    }
    for (size_t i = 1; i < hashes.size(); ++i) CHECK(hashes[i] == hashes[0]);
  }
}

TEST_CASE("P ranks match one rank fed the union of each step's batches", "[trainer][equivalence]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  auto local = comm::create_communicator("local", Device::cpu());
  const int P = comm->size();
  Plan plan;
  for (int r = 0; r < P; ++r) plan.sizes.push_back(std::vector<int64_t>(5, 8 + 3 * r));
  auto cfg = quiet();
  cfg.epochs = 2;
  const RunResult multi = run_plan(plan, *comm, cfg);
  // The single-rank reference: step k's batch = concatenation of every rank's k-th batch.
  std::vector<data::Batch> unions;
  for (size_t k = 0; k < plan.max_batches(); ++k) {
    std::vector<data::Batch> parts;
    for (int r = 0; r < P; ++r) parts.push_back(plan.batches_of(r)[k]);
    unions.push_back(test::concat(parts));
  }
  Context ctx;
  auto model = test::fixture_model(ctx);
  train::Trainer single(*model, *local, ctx, cfg);
  train::VectorBatchSource source(unions);
  single.fit(source);
  // Not bitwise: the P-rank gradient is a sum of per-rank partial sums (all-reduce), the 1-rank
  // one a single GEMM/segment sum over the union, so float additions happen in another order
  // (~1e-7 relative per step). Adam and row-wise Adagrad normalise the steps, so these rounding
  // differences stay at the level of a few ulps of the parameters after 10 steps.
  test::require_close(multi.state, test::all_state(ctx, *model), 2e-6, 1e-4,
                      "P ranks vs 1 rank on the union");
}

TEST_CASE("A step skew or a failure on one rank raises the same error on every rank",
          "[trainer][divergence]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) plan.sizes.push_back(std::vector<int64_t>(6, 8));
  auto cfg = quiet();
  {
    train::testing::FaultScope fault("skew:1:3");
    CHECK_THROWS_WITH(run_plan(plan, *comm, cfg),
                      Contains("divergence at step 3") && Contains("rank 1 is at step 4"));
  }
  {
    train::testing::FaultScope fault("fail:1:2");
    CHECK_THROWS_WITH(run_plan(plan, *comm, cfg), Contains("step 2 failed on rank 1"));
  }
}

TEST_CASE("Ranks with different configurations refuse to start", "[trainer][startup]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Context ctx;
  auto config = test::fixture_config();
  if (comm->rank() == 1) config.tables[1].dim = 16;  // rank 1 has wider item embeddings
  models::EmbeddingMlp<float> model(config, test::fixture_columns(), 3, ctx);
  CHECK_THROWS_WITH(train::Trainer(model, *comm, ctx, quiet()),
                    Contains("ranks disagree at start-up") && Contains("rank(s) 1"));
}

TEST_CASE("Multi-rank checkpoint and resume reproduce the uninterrupted run bitwise",
          "[trainer][checkpoint]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) plan.sizes.push_back(std::vector<int64_t>(4 + r, 10));
  auto cfg = quiet();
  cfg.epochs = 2;
  const RunResult reference = run_plan(plan, *comm, cfg, nn::ActivationKind::Dice);

  // One shared directory: rank 0 picks it and tells the others.
  char path[256] = {};
  if (comm->rank() == 0) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("lockstep-mpi-ckpt-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::snprintf(path, sizeof path, "%s", dir.c_str());
  }
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  auto stop = cfg;
  stop.checkpoint_dir = path;
  stop.handle_signals = true;
  RunResult stopped;
  {
    train::testing::FaultScope fault("sigterm:1:" + std::to_string(plan.max_batches() + 1));
    stopped = run_plan(plan, *comm, stop, nn::ActivationKind::Dice);
  }
  CHECK(stopped.fit.stopped);
  auto resume = cfg;
  resume.checkpoint_dir = path;
  resume.resume = true;
  const RunResult resumed = run_plan(plan, *comm, resume, nn::ActivationKind::Dice);
  CHECK(resumed.hash == reference.hash);
  test::require_bitwise_equal(resumed.state, reference.state, "resumed vs uninterrupted");
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm->rank() == 0) std::filesystem::remove_all(path);
}

namespace {
/// A batch source that throws lockstep::Error on one rank at its `fail_at`-th batch.
class FailingSource : public train::BatchSource {
 public:
  FailingSource(std::vector<data::Batch> batches, bool fails, size_t fail_at)
      : inner_(std::move(batches)), fails_(fails), fail_at_(fail_at) {}
  void start_epoch(int64_t epoch) override {
    inner_.start_epoch(epoch);
    served_ = 0;
  }
  bool next(data::Batch& out) override {
    if (fails_ && served_++ == fail_at_) throw Error("test.tsv:4: field 'label': 'x' is not 0 or 1");
    return inner_.next(out);
  }

 private:
  train::VectorBatchSource inner_;
  bool fails_;
  size_t fail_at_, served_ = 0;
};

/// A shared temporary directory: rank 0 picks it and tells the others.
std::string shared_temp_dir(const std::string& stem) {
  char path[256] = {};
  if (world_rank() == 0) {
    const auto dir = std::filesystem::temp_directory_path() /
                     (stem + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::snprintf(path, sizeof path, "%s", dir.c_str());
  }
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  return path;
}

/// Runs `fn` (expected to throw on every rank) and returns this rank's message; the failure must
/// be a JobError (every rank raised it together) and come without waiting for any deadline.
template <class F>
std::string job_error_of(F&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  try {
    fn();
  } catch (const JobError& e) {
    message = e.what();
  }
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  return message;
}
}  // namespace

TEST_CASE("A bad record that one rank reads stops every rank with that rank's message",
          "[trainer][failure]") {
  if (world_size() < 2) return;
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Context ctx(Device::cpu(), ContextOptions{false, 0, 7});
  auto model = test::fixture_model(ctx, nn::ActivationKind::PReLU);
  train::Trainer trainer(*model, *comm, ctx, quiet());
  Plan plan;
  for (int r = 0; r < comm->size(); ++r) plan.sizes.push_back(std::vector<int64_t>(4, 8));
  const bool victim = comm->rank() == 1;
  SECTION("in training: the step's message carries it to every rank") {
    FailingSource train(plan.batches_of(comm->rank()), victim, 2);
    const std::string m = job_error_of([&] { trainer.fit(train); });
    CHECK_THAT(m, Contains("lockstep step 1 failed on rank(s) 1: rank 1: reading the next batch "
                           "failed: test.tsv:4: field 'label'"));
  }
  SECTION("in evaluation: a vote") {
    train::VectorBatchSource train(plan.batches_of(comm->rank()));
    FailingSource eval(plan.batches_of(comm->rank()), victim, 1);
    const std::string m = job_error_of([&] { trainer.fit(train, &eval); });
    CHECK_THAT(m, Contains("evaluation failed on rank(s) 1: rank 1: test.tsv:4: field 'label'"));
  }
  SECTION("in the forward pass") {
    train::VectorBatchSource train(plan.batches_of(comm->rank()));
    train::testing::FaultScope fault("error:1:2");
    train::Trainer injected(*model, *comm, ctx, quiet());
    const std::string m = job_error_of([&] { injected.fit(train); });
    CHECK_THAT(m, Contains("lockstep step 2 failed on rank(s) 1: rank 1: forward/backward failed: "
                           "injected error"));
  }
  SECTION("in a driver's own phase: Trainer::vote") {
    const std::string m = job_error_of([&] {
      trainer.vote("writing the outputs", [&] {
        LOCKSTEP_CHECK(comm->rank() != 0, "/out/student: cannot create the directory");
      });
    });
    CHECK_THAT(m, Contains("writing the outputs failed on rank(s) 0: rank 0: /out/student: cannot "
                           "create the directory"));
    // Everyone succeeding is no error, and the trainer stays usable.
    trainer.vote("nothing", [] {});
    train::VectorBatchSource train(plan.batches_of(comm->rank()));
    CHECK(trainer.fit(train).updates == 4);
  }
}

TEST_CASE("Ranks that begin at different points are named at start-up", "[trainer][startup]") {
  if (world_size() < 2) return;
  auto comm = comm::create_communicator("mpi", Device::cpu());
  Context ctx(Device::cpu(), ContextOptions{false, 0, 7});
  auto model = test::fixture_model(ctx, nn::ActivationKind::PReLU);
  const std::string dir = shared_temp_dir("lockstep-mpi-start");
  auto cfg = quiet();
  cfg.checkpoint_dir = dir;
  SECTION("one resuming, one not") {
    cfg.resume_or_start = comm->rank() != 1;
    const std::string m = job_error_of([&] { train::Trainer(*model, *comm, ctx, cfg); });
    CHECK_THAT(m, Contains("ranks disagree at start-up: the trainer settings of rank(s) 1") &&
                      Contains("resume_or_start: 'false' on rank 1, 'true' on rank 0"));
  }
  SECTION("different checkpoint directories") {
    if (comm->rank() == 1) cfg.checkpoint_dir = dir + "-other";
    const std::string m = job_error_of([&] { train::Trainer(*model, *comm, ctx, cfg); });
    CHECK_THAT(m, Contains("checkpoint_dir: '" + dir + "-other' on rank 1, '" + dir + "' on rank 0"));
  }
  SECTION("different run configurations") {
    cfg.run_config = fmt::format("--batch-size={}\n--config line 3=dim = {}\n", 1024,
                                 comm->rank() == 1 ? 16 : 8);
    const std::string m = job_error_of([&] { train::Trainer(*model, *comm, ctx, cfg); });
    CHECK_THAT(m, Contains("the run configuration of rank(s) 1") &&
                      Contains("--config line 3: 'dim = 16' on rank 1, 'dim = 8' on rank 0"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm->rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(dir + "-other");
  }
}

TEST_CASE("Text files read once across ranks: uneven shards, every record trained on once",
          "[trainer][uneven][files]") {
  auto comm = comm::create_communicator("mpi", Device::cpu());
  const int P = comm->size();
  const data::Schema schema({data::Column::label("click"), data::Column::dense("d", 3),
                             data::Column::sparse("user"), data::Column::sparse("item"),
                             data::Column::sequence("hist", 5)});
  // Every rank writes the same files (odd record counts, an empty one) into its own directory.
  test::TempDir dir;
  std::vector<std::string> files;
  uint64_t first = 0;
  for (const int64_t n : {13, 0, 41, 7, 1, 29}) {
    std::string text;
    data::append_text(text, schema, test::fixture_batch(first, n));
    files.push_back(dir.write(fmt::format("part-{}.tsv", files.size()), text));
    first += static_cast<uint64_t>(n);
  }
  for (const bool few_files : {false, true}) {
    INFO((few_files ? "one file: byte ranges" : "six files"));
    const std::vector<std::string> use =
        few_files ? std::vector<std::string>{files[2]} : files;
    // What one reader sees: the moments of every sample id (byte offsets), and the record count.
    double s = 0, s2 = 0;
    int64_t records = 0;
    {
      train::FileSourceOptions o;
      o.batch_size = 1000;
      train::TextBatchSource all(use, schema, o);
      all.start_epoch(0);
      data::Batch b;
      while (all.next(b)) {
        records += b.size;
        for (uint64_t id : b.sample_ids) {
          s += static_cast<double>(id);
          s2 += static_cast<double>(id) * static_cast<double>(id);
        }
      }
    }
    train::FileSourceOptions o;
    o.batch_size = 4;
    o.rank = comm->rank();
    o.ranks = P;
    o.workers = comm->rank() % 2;  // batches do not depend on it
    o.chunk_bytes = 100;
    train::TextBatchSource shard(use, schema, o);
    Context ctx(Device::cpu(), ContextOptions{false, 0, 7});
    auto model = test::fixture_model(ctx);
    train::TrainerConfig cfg = quiet();
    cfg.epochs = 2;
    train::Trainer trainer(*model, *comm, ctx, cfg);
    double local[3] = {0, 0, 0};
    int64_t my_batches = 0;
    trainer.on_step([&](const train::StepInfo& info) {
      if (info.epoch != 0) return;
      my_batches += info.batch->size > 0;
      local[2] += static_cast<double>(info.batch->size);
      for (uint64_t id : info.batch->sample_ids) {
        local[0] += static_cast<double>(id);
        local[1] += static_cast<double>(id) * static_cast<double>(id);
      }
    });
    const auto fit = trainer.fit(shard);
    double total[3];
    MPI_Allreduce(local, total, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    CHECK(total[0] == s);  // every record once (ids are byte offsets) ...
    CHECK(total[1] == s2);
    CHECK(total[2] == static_cast<double>(records));
    int64_t most = 0;
    MPI_Allreduce(&my_batches, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    CHECK(fit.updates == static_cast<uint64_t>(2 * most));  // the longest shard sets the steps
    const uint64_t hash = test::state_hash(ctx, *model);
    uint64_t lo = 0, hi = 0;
    MPI_Allreduce(&hash, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&hash, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi);
  }
}

// The cost of the lockstep sync point: step time of the embedding + MLP model with
// LocalTrainer (no communicator) vs the lockstep Trainer on a communicator (control block, one
// all-reduce and the sparse exchange per step), same batches; and the lockstep Trainer with each
// step staging its own batch instead of the next one during the step (TrainerConfig::
// stage_ahead = false): what the overlap of staging with compute gains. All-reduce bandwidth
// for the gradient buffer size: lockstep-bench-comm.
//
//   lockstep-bench-sync [--device cpu|cuda] [--comm local|mpi|nccl] [--batch N] [--steps N]
//   mpirun -np 1 lockstep-bench-sync --comm mpi      # the MPI path at one rank

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "bench_util.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/core/logging.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"

using namespace lockstep;
using Clock = std::chrono::steady_clock;

namespace {
models::EmbeddingMlpConfig demo_model(const data::Schema& schema, std::vector<std::string>& columns) {
  models::EmbeddingMlpConfig c;
  for (int64_t col : schema.sparse_columns()) columns.push_back(schema.columns()[col].name);
  for (const auto& name : columns) {
    std::string table = name == "hist_items" ? "item" : name == "hist_cats" ? "item_cat" : name;
    if (table == name) c.tables.push_back({name, 1 << 17, 16});
    c.fields.push_back({name, table});
  }
  return c;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep sync-point cost: step time with and without the communicator, all-reduce bandwidth"};
  std::string device_flag = "auto", comm_flag = "auto";
  int64_t batch = 1024, steps = 50;
  app.add_option("--device", device_flag, "auto, cpu, cuda");
  app.add_option("--comm", comm_flag, "auto, local, mpi, nccl");
  app.add_option("--batch", batch, "samples per step")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  CLI11_PARSE(app, argc, argv);
  try {
    const auto [local_rank, local_size] = comm::launcher_local_rank();
    const Device device = select_device(device_flag, local_rank);
    Context ctx(device);
    auto comm = comm::create_communicator(comm_flag, device);
    const int rank = comm->rank(), ranks = comm->size();
    if (rank != 0) set_log_level("warn");
    data::SyntheticGenerator gen(data::SyntheticConfig::demo());
    std::vector<std::string> columns;
    const auto config = demo_model(gen.schema(), columns);
    std::vector<data::Batch> batches;
    for (int64_t s = 0; s < steps; ++s)
      batches.push_back(gen.generate((s * ranks + rank) * batch, batch));

    // Per-step times of the three, interleaved in rounds so that machine noise hits them alike;
    // medians are reported. The two lockstep trainers differ only in staging the next batch
    // during the step (the default; on CUDA on a stream of its own) or at its start.
    models::EmbeddingMlp<float> local_model(config, columns, gen.schema().num_dense(), ctx);
    if (rank == 0)
      std::printf("dense gradient buffer: %lld floats (%.2f MB)\n",
                  static_cast<long long>(local_model.dense_params().size()),
                  local_model.dense_params().size() * 4e-6);
    train::LocalTrainer<float> local(local_model, ctx);
    struct Timed {
      std::unique_ptr<models::EmbeddingMlp<float>> model;
      std::unique_ptr<train::Trainer> trainer;
      std::vector<double> times;
      uint64_t staged_ahead = 0;
      Clock::time_point last;
      bool first_of_fit = true;  // the first step of a fit() also pays fit()'s set-up: not timed
    };
    Timed lockstep_timed[2];  // [0]: staged ahead, [1]: each step stages its own batch
    for (int k = 0; k < 2; ++k) {
      Timed& t = lockstep_timed[k];
      t.model = std::make_unique<models::EmbeddingMlp<float>>(config, columns,
                                                              gen.schema().num_dense(), ctx);
      train::TrainerConfig tc;
      tc.log_every = 0;
      tc.handle_signals = false;
      tc.stage_ahead = k == 0;
      t.trainer = std::make_unique<train::Trainer>(*t.model, *comm, ctx, tc);
      t.trainer->on_step([&ctx, &t](const train::StepInfo&) {  // kept for every fit()
        ctx.synchronize();
        const auto now = Clock::now();
        if (!t.first_of_fit)
          t.times.push_back(std::chrono::duration<double, std::milli>(now - t.last).count());
        t.first_of_fit = false;
        t.last = now;
      });
    }
    std::vector<double> local_times;
    const auto run_trainer = [&](Timed& t, int64_t first, int64_t count) {
      t.first_of_fit = true;
      train::VectorBatchSource part(
          std::vector<data::Batch>(batches.begin() + first, batches.begin() + first + count));
      t.staged_ahead += t.trainer->fit(part).steps_staged_ahead;
    };
    const int64_t round = std::min<int64_t>(10, steps);  // --steps below 10: one round
    for (int64_t first = 0; first + round <= static_cast<int64_t>(batches.size()); first += round) {
      for (int64_t s = first; s < first + round; ++s) {
        const auto t0 = Clock::now();
        local.step(batches[s]);
        ctx.synchronize();
        local_times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      for (Timed& t : lockstep_timed) run_trainer(t, first, round);
    }
    const double local_ms = bench::median(local_times);
    const double ahead_ms = bench::median(lockstep_timed[0].times);
    const double own_ms = bench::median(lockstep_timed[1].times);
    if (rank == 0) {
      const std::string name = comm->backend();
      std::printf("step time, batch %lld, %d rank(s), %s on %s:\n", static_cast<long long>(batch),
                  ranks, name.c_str(), device.str().c_str());
      std::printf("  LocalTrainer (no communicator)          %8.3f ms\n", local_ms);
      std::printf("  lockstep Trainer (%s)%*s%8.3f ms  (%+.1f%%: the sync point)\n", name.c_str(),
                  static_cast<int>(21 - name.size()), "", ahead_ms,
                  100.0 * (ahead_ms - local_ms) / local_ms);
      std::printf(
          "  ... each step staging its own batch     %8.3f ms  (staging ahead saves "
          "%.1f%%; %llu steps began on a batch staged ahead)\n",
          own_ms, 100.0 * (own_ms - ahead_ms) / own_ms,
          static_cast<unsigned long long>(lockstep_timed[0].staged_ahead));
    }
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
  return 0;
}

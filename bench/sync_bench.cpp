// The cost of the lockstep sync point: step time of the embedding + MLP model with
// LocalTrainer (no communicator) vs the lockstep Trainer on a communicator (control block, one
// all-reduce and the sparse exchange per step), same batches. All-reduce bandwidth for the
// gradient buffer size: lockstep-bench-comm.
//
//   lockstep-bench-sync [--device cpu|cuda] [--comm local|mpi|nccl] [--batch N] [--steps N]
//   mpirun -np 1 lockstep-bench-sync --comm mpi      # the MPI path at one rank

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

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

    // Per-step times of both, interleaved in rounds so that machine noise hits both alike;
    // medians are reported.
    models::EmbeddingMlp<float> local_model(config, columns, gen.schema().num_dense(), ctx);
    models::EmbeddingMlp<float> lockstep_model(config, columns, gen.schema().num_dense(), ctx);
    if (rank == 0)
      std::printf("dense gradient buffer: %lld floats (%.2f MB)\n",
                  static_cast<long long>(local_model.dense_params().size()),
                  local_model.dense_params().size() * 4e-6);
    train::LocalTrainer<float> local(local_model, ctx);
    train::TrainerConfig tc;
    tc.log_every = 0;
    tc.handle_signals = false;
    train::Trainer trainer(lockstep_model, *comm, ctx, tc);
    std::vector<double> local_times, lockstep_times;
    auto last = Clock::now();
    bool first_of_fit = true;  // the first step of a fit() also pays fit()'s set-up: not timed
    trainer.on_step([&](const train::StepInfo&) {
      ctx.synchronize();
      const auto now = Clock::now();
      if (!first_of_fit)
        lockstep_times.push_back(std::chrono::duration<double, std::milli>(now - last).count());
      first_of_fit = false;
      last = now;
    });
    const int64_t round = 10;
    for (int64_t first = 0; first + round <= static_cast<int64_t>(batches.size()); first += round) {
      for (int64_t s = first; s < first + round; ++s) {
        const auto t0 = Clock::now();
        local.step(batches[s]);
        ctx.synchronize();
        local_times.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
      train::VectorBatchSource part(
          std::vector<data::Batch>(batches.begin() + first, batches.begin() + first + round));
      first_of_fit = true;
      trainer.fit(part);
    }
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double local_ms = median(local_times), lockstep_ms = median(lockstep_times);
    if (rank == 0)
      std::printf("step time, batch %lld, %d rank(s), %s on %s:\n  LocalTrainer (no communicator)   "
                  "%8.3f ms\n  lockstep Trainer (%s)%*s%8.3f ms  (+%.1f%%)\n",
                  static_cast<long long>(batch), ranks, comm->backend().c_str(),
                  device.str().c_str(), local_ms, comm->backend().c_str(),
                  static_cast<int>(14 - comm->backend().size()), "", lockstep_ms,
                  100.0 * (lockstep_ms - local_ms) / local_ms);

  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
  return 0;
}

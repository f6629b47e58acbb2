// The cost of the lockstep sync point: step time of the embedding + MLP model with
// LocalTrainer (no communicator) vs the lockstep Trainer on a communicator (control block, one
// all-reduce and the sparse exchange per step), same batches. All-reduce bandwidth for the
// gradient buffer size: lockstep-bench-comm.
//
//   lockstep-bench-sync [--device cpu|cuda] [--comm local|mpi|nccl] [--batch N] [--steps N]
//   mpirun -np 1 lockstep-bench-sync --comm mpi      # the MPI path at one rank

#include <CLI/CLI.hpp>

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
    for (int64_t s = 0; s < steps + 5; ++s)
      batches.push_back(gen.generate((s * ranks + rank) * batch, batch));

    // 1. step time: LocalTrainer vs lockstep Trainer (same batches, same model).
    double local_ms = 0, lockstep_ms = 0;
    {
      models::EmbeddingMlp<float> model(config, columns, gen.schema().num_dense(), ctx);
      if (rank == 0)
        std::printf("dense gradient buffer: %lld floats (%.2f MB)\n",
                    static_cast<long long>(model.dense_params().size()),
                    model.dense_params().size() * 4e-6);
      train::LocalTrainer<float> local(model, ctx);
      for (int i = 0; i < 5; ++i) local.step(batches[i]);
      ctx.synchronize();
      const auto t0 = Clock::now();
      for (int64_t s = 0; s < steps; ++s) local.step(batches[5 + s]);
      ctx.synchronize();
      local_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
    }
    {
      models::EmbeddingMlp<float> model(config, columns, gen.schema().num_dense(), ctx);
      train::TrainerConfig tc;
      tc.log_every = 0;
      tc.handle_signals = false;
      train::Trainer trainer(model, *comm, ctx, tc);
      train::VectorBatchSource warm(std::vector<data::Batch>(batches.begin(), batches.begin() + 5));
      trainer.fit(warm);
      train::VectorBatchSource timed(std::vector<data::Batch>(batches.begin() + 5, batches.end()));
      const auto r = trainer.fit(timed);
      lockstep_ms = r.train_seconds * 1e3 / static_cast<double>(r.steps);
    }
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

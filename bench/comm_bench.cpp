// All-reduce latency and bandwidth of a lockstep communicator (run under mpirun).
//
// For each size: `--iters` timed calls after warm-up, each started together after a barrier;
// an iteration's time is the slowest rank's, and the table shows the median. algbw = bytes / t,
// busbw = algbw * 2 (n - 1) / n (the nccl-tests convention). With --baseline the same sizes run
// through a plain blocking MPI_Allreduce on host memory, for comparison with the mpi backend.
#include <mpi.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/core/tensor.h"

using namespace lockstep;

namespace {

/// Median over iterations of the slowest rank's seconds for one call of fn.
double median_slowest_s(comm::Communicator& comm, const std::function<void()>& fn, int iters) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> mine;
  for (int i = 0; i < iters; ++i) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    mine.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> slowest(mine.size());
  MPI_Allreduce(mine.data(), slowest.data(), static_cast<int>(mine.size()), MPI_DOUBLE, MPI_MAX,
                MPI_COMM_WORLD);
  std::sort(slowest.begin(), slowest.end());
  return slowest[slowest.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep all-reduce benchmark (run under mpirun)"};
  std::string kind = "mpi", device_name = "cpu";
  int iters = 50;
  bool baseline = false;
  std::vector<int64_t> sizes = {8, 256, 4096, 65536, 1 << 20, 16 << 20, 64 << 20};
  app.add_option("--comm", kind, "communicator: auto, mpi or nccl");
  app.add_option("--device", device_name, "cpu, cuda or cuda:N (cuda picks the local rank's GPU)");
  app.add_option("--iters", iters, "timed calls per size")->check(CLI::Range(1, 100000));
  app.add_option("--sizes", sizes, "message sizes in bytes (multiples of 4: F32 elements)");
  app.add_flag("--baseline", baseline, "also time a plain MPI_Allreduce on host memory");
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = select_device(device_name, comm::launcher_local_rank().first);
    auto comm = comm::create_communicator(kind, device);
    comm->set_step(1);
    Context ctx(device);
    const int n = comm->size();
    if (comm->rank() == 0) {
      std::printf("all_reduce_sum F32, backend %s, %d ranks, device %s, median of %d\n",
                  comm->backend().c_str(), n, device.str().c_str(), iters);
      std::printf("%12s %12s %12s %12s%s\n", "bytes", "time us", "algbw GB/s", "busbw GB/s",
                  baseline ? "   MPI_Allreduce us  algbw GB/s" : "");
    }
    for (int64_t bytes : sizes) {
      const int64_t count = bytes / 4;
      Tensor<float> data(ctx, {count});
      std::vector<float> host(static_cast<size_t>(count), 1.0f);
      if (count > 0) upload(ctx, host, data);
      const double t = median_slowest_s(
          *comm, [&] { comm->all_reduce_sum(ctx, data.data(), count, comm::DataType::F32); },
          iters);
      double t_mpi = 0;
      if (baseline) {
        std::vector<float> out(host.size());
        t_mpi = median_slowest_s(
            *comm,
            [&] {
              MPI_Allreduce(host.data(), out.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                            MPI_COMM_WORLD);
            },
            iters);
      }
      if (comm->rank() == 0) {
        const double algbw = static_cast<double>(bytes) / t / 1e9;
        std::printf("%12lld %12.1f %12.3f %12.3f", static_cast<long long>(bytes), t * 1e6, algbw,
                    algbw * 2.0 * (n - 1) / n);
        if (baseline)
          std::printf(" %18.1f %11.3f", t_mpi * 1e6, static_cast<double>(bytes) / t_mpi / 1e9);
        std::printf("\n");
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// A lockstep-style loop for the fault tests: every step all-reduces a small block with a short
// timeout; at --fault-step the --victim rank either sleeps past every deadline (--fault sleep) or
// kills itself (--fault kill). The other ranks must catch CommError, print it and end the job.
// Exit codes: 0 all steps done, 3 a communication fault ended the job, 2 a usage or other error.
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <vector>

#include "lockstep/comm/communicator.h"

using namespace lockstep;

int main(int argc, char** argv) {
  CLI::App app{"lockstep communicator fault test program (run under mpirun)"};
  comm::CommOptions options;
  options.startup_timeout_s = 60;
  options.timeout_s = 2;
  int steps = 10, victim = 1, fault_step = 5;
  std::string fault = "none", kind = "mpi";
  app.add_option("--timeout", options.timeout_s, "deadline of every wait after step 0 (s)");
  app.add_option("--steps", steps, "steps to run");
  app.add_option("--victim", victim, "rank that fails");
  app.add_option("--fault-step", fault_step, "step at which the victim fails");
  app.add_option("--fault", fault, "none, sleep or kill")
      ->check(CLI::IsMember({"none", "sleep", "kill"}));
  app.add_option("--comm", kind, "communicator: mpi, nccl or auto");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<comm::Communicator> comm;
  try {
    comm = comm::create_communicator(kind, Device::cpu(), options);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  Context ctx;
  std::vector<double> block(64);
  for (int step = 0; step < steps; ++step) {
    comm->set_step(step);
    if (comm->rank() == victim && step == fault_step) {
      if (fault == "kill") std::raise(SIGKILL);
      if (fault == "sleep") {
        std::fprintf(stderr, "rank %d: sleeping at step %d\n", victim, step);
        std::this_thread::sleep_for(std::chrono::seconds(120));
      }
    }
    for (size_t i = 0; i < block.size(); ++i) block[i] = comm->rank() + static_cast<double>(i);
    try {
      comm->all_reduce_sum(ctx, block.data(), static_cast<int64_t>(block.size()),
                           comm::DataType::F64);
    } catch (const comm::CommError& e) {
      std::fprintf(stderr, "lockstep: %s\n", e.what());
      comm->abort(3);
    }
    const int n = comm->size();
    if (block[1] != n * (n - 1) / 2.0 + n) {  // Σ_r (r + 1)
      std::fprintf(stderr, "rank %d: wrong sum %g at step %d\n", comm->rank(), block[1], step);
      return 2;
    }
  }
  if (comm->rank() == 0) std::printf("completed %d steps on %d ranks\n", steps, comm->size());
  return 0;
}

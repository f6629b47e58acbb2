// Runner for the multi-rank GPU tests (label gpu): every rank exits 77 — reported by ctest as
// skipped, never as passed — when no CUDA device is visible; otherwise every rank runs every test
// case between MPI_Init and MPI_Finalize.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>

#include "lockstep/core/device.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) listing = true;
  if (!listing && lockstep::cuda_device_count() == 0) {
    std::printf("SKIPPED: %s\n", lockstep::built_with_cuda()
                                     ? "no CUDA device is visible"
                                     : "this build has no CUDA support (LOCKSTEP_WITH_CUDA=OFF)");
    return 77;
  }
  MPI_Init(&argc, &argv);
  const int failed = Catch::Session().run(argc, argv);
  int any = failed != 0, total = 0;
  MPI_Allreduce(&any, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}

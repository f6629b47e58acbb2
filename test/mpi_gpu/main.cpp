// Runner for the multi-rank GPU tests (label gpu): every rank exits 77 — reported by ctest as
// skipped, never as passed — when no CUDA device is visible; otherwise every rank runs every test
// case between MPI_Init and MPI_Finalize.
#include <mpi.h>
#include "catch_session.h"

#include "gpu_skip.h"

int main(int argc, char** argv) {
  if (const int skip = lockstep::test::skip_without_gpu(argc, argv)) return skip;
  MPI_Init(&argc, &argv);
  const int failed = lockstep::test::run_catch_session(argc, argv);
  int any = failed != 0, total = 0;
  MPI_Allreduce(&any, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}

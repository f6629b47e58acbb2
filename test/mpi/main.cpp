// Runner for the multi-rank tests (label mpi): every rank runs every test case between
// MPI_Init and MPI_Finalize; ctest starts it under mpirun.
#include <mpi.h>
#include "catch_session.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int failed = lockstep::test::run_catch_session(argc, argv);
  // A rank whose assertions failed makes the whole job fail.
  int any = failed != 0, total = 0;
  MPI_Allreduce(&any, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}

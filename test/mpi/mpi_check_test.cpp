// The MPI test harness itself and the MPI error check.
#include <mpi.h>
#include <catch2/catch.hpp>

#include "comm/mpi_check.h"

using Catch::Matchers::Contains;

TEST_CASE("every rank takes part: an all-reduce of rank ids", "[mpi]") {
  int rank = -1, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  REQUIRE(size >= 2);
  int sum = 0;
  LOCKSTEP_MPI_CHECK(MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
  CHECK(sum == size * (size - 1) / 2);
}

TEST_CASE("LOCKSTEP_MPI_CHECK turns a failing MPI call into a lockstep::Error", "[mpi]") {
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int size = 0, value = 1;
  MPI_Comm_size(comm, &size);
  CHECK_THROWS_WITH([&] { LOCKSTEP_MPI_CHECK(MPI_Send(&value, 1, MPI_INT, size + 5, 0, comm)); }(),
                    Contains("MPI error") && Contains("MPI_Send") && Contains("rank"));
  MPI_Comm_free(&comm);
}

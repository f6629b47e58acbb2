#pragma once
// Internal: MPI error checks. Only include where LOCKSTEP_MPI_ENABLED is 1.

#include <mpi.h>

#include "lockstep/core/error.h"

namespace lockstep::detail {
/// Throws Error("MPI error <class> (<text>) in <expr> at <file>:<line>"). Safe to call before
/// MPI_Init (the text is then omitted: MPI forbids MPI_Error_string there).
[[noreturn]] void throw_mpi_error(int code, const char* expr, const char* file, int line);
}  // namespace lockstep::detail

/// Runs an MPI call that returns an error code (on a communicator whose error handler is
/// MPI_ERRORS_RETURN) and throws lockstep::Error on failure.
#define LOCKSTEP_MPI_CHECK(expr)                                                        \
  do {                                                                                  \
    const int lockstep_mpi_rc_ = (expr);                                                \
    if (lockstep_mpi_rc_ != MPI_SUCCESS)                                                \
      ::lockstep::detail::throw_mpi_error(lockstep_mpi_rc_, #expr, __FILE__, __LINE__); \
  } while (0)

// Error reporting for MPI and NCCL calls (comm/mpi_check.h, comm/nccl_check.h).
#include "lockstep/config.h"

#if LOCKSTEP_MPI_ENABLED
#include "comm/mpi_check.h"
#endif
#if LOCKSTEP_NCCL_ENABLED
#include "comm/nccl_check.h"
#endif

namespace lockstep::detail {

#if LOCKSTEP_MPI_ENABLED
void throw_mpi_error(int code, const char* expr, const char* file, int line) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  std::string text = "MPI not initialised";
  int error_class = code;
  if (initialized && !finalized) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) == MPI_SUCCESS)
      text.assign(buf, static_cast<size_t>(len));
    MPI_Error_class(code, &error_class);
  }
  throw Error(fmt::format("MPI error {} ({}) in {} at {}:{}", error_class, text, expr, file, line));
}
#endif

#if LOCKSTEP_NCCL_ENABLED
void throw_nccl_error(ncclResult_t result, const char* expr, const char* file, int line) {
  const char* last = ncclGetLastError(nullptr);
  throw Error(fmt::format("NCCL error {} ({}{}{}) in {} at {}:{}", static_cast<int>(result),
                          ncclGetErrorString(result), last && *last ? "; last error: " : "",
                          last ? last : "", expr, file, line));
}
#endif

}  // namespace lockstep::detail

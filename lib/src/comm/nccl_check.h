#pragma once
// Internal: NCCL error checks. Only include where LOCKSTEP_NCCL_ENABLED is 1.

#include <nccl.h>

#include "lockstep/core/error.h"

namespace lockstep::detail {
/// Throws Error("NCCL error <name> (<text>; last error: <ncclGetLastError>) in <expr> at
/// <file>:<line>").
[[noreturn]] void throw_nccl_error(ncclResult_t result, const char* expr, const char* file,
                                   int line);
}  // namespace lockstep::detail

/// Runs an NCCL call and throws lockstep::Error on any result but ncclSuccess and
/// ncclInProgress (non-blocking communicators report in-progress work; poll it with
/// ncclCommGetAsyncError).
#define LOCKSTEP_NCCL_CHECK(expr)                                                         \
  do {                                                                                    \
    const ncclResult_t lockstep_nccl_rc_ = (expr);                                        \
    if (lockstep_nccl_rc_ != ncclSuccess && lockstep_nccl_rc_ != ncclInProgress)          \
      ::lockstep::detail::throw_nccl_error(lockstep_nccl_rc_, #expr, __FILE__, __LINE__); \
  } while (0)

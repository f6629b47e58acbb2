#pragma once
// For the main() of GPU test executables: without a visible CUDA device they exit 77, which
// ctest reports as skipped (SKIP_RETURN_CODE), never as passed. Listing tests still works, so
// catch_discover_tests can register them on machines without a GPU.

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "lockstep/core/device.h"

namespace lockstep::test {

/// 77 when the executable must skip (after printing why), or 0 to run the tests. With
/// LOCKSTEP_REQUIRE_GPU=1 in the environment (scripts/gpu_check.sh sets it on the GPU machine)
/// a missing device is a failure (1), not a skip: a broken driver must not pass as "skipped".
inline int skip_without_gpu(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return 0;
  if (cuda_device_count() > 0) return 0;
  const char* require = std::getenv("LOCKSTEP_REQUIRE_GPU");
  const bool required = require != nullptr && std::strcmp(require, "0") != 0;
  std::printf("%s: %s\n", required ? "FAILED (LOCKSTEP_REQUIRE_GPU is set)" : "SKIPPED",
              cuda_unavailable_reason().c_str());
  return required ? 1 : 77;
}

}  // namespace lockstep::test

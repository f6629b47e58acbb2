#pragma once
// For the main() of GPU test executables: without a visible CUDA device they exit 77, which
// ctest reports as skipped (SKIP_RETURN_CODE), never as passed. Listing tests still works, so
// catch_discover_tests can register them on machines without a GPU.

#include <cstdio>
#include <cstring>

#include "lockstep/core/device.h"

namespace lockstep::test {

/// 77 when the executable must skip (after printing why), or 0 to run the tests.
inline int skip_without_gpu(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return 0;
  if (cuda_device_count() > 0) return 0;
  std::printf("SKIPPED: %s\n", built_with_cuda()
                                   ? "no CUDA device is visible"
                                   : "this build has no CUDA support (LOCKSTEP_WITH_CUDA=OFF)");
  return 77;
}

}  // namespace lockstep::test

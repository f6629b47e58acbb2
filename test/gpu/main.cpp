// Runner for the GPU parity tests: exits 77 (reported by ctest as skipped) when no CUDA device
// is visible, so a machine without a GPU never reports these tests as passed.
#define CATCH_CONFIG_RUNNER
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
  return Catch::Session().run(argc, argv);
}

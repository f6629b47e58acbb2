// Runner for the GPU parity tests: skipped (exit 77) when no CUDA device is visible.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "gpu_skip.h"

int main(int argc, char** argv) {
  if (const int skip = lockstep::test::skip_without_gpu(argc, argv)) return skip;
  return Catch::Session().run(argc, argv);
}

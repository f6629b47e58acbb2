// Runner for the GPU parity tests: skipped (exit 77) when no CUDA device is visible.
#include "catch_session.h"

#include "gpu_skip.h"

int main(int argc, char** argv) {
  if (const int skip = lockstep::test::skip_without_gpu(argc, argv)) return skip;
  return lockstep::test::run_catch_session(argc, argv);
}

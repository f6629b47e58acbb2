// Uses the installed public API: a context, a tensor and the library version.
#include <lockstep/config.h>
#include <lockstep/core/context.h>
#include <lockstep/core/tensor.h>

#include <cstdio>

int main() {
  lockstep::Context ctx;
  auto t = lockstep::make_tensor<float>(ctx, {1.0f, 2.0f, 3.0f});
  const auto back = lockstep::to_host(ctx, t);
  const float sum = back[0] + back[1] + back[2];
  std::printf("lockstep %s consumer: sum = %g\n", LOCKSTEP_VERSION_STRING, sum);
  return sum == 6.0f ? 0 : 1;
}

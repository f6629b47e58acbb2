// CUDA vs CPU dropout (kernels/dropout.h): bitwise equal.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/control.h"
#include "kernels/dropout.h"
#include "lockstep/core/tensor.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

// ==== Dropout ================================================================================

TEST_CASE("CUDA dropout is bitwise equal to the CPU", "[gpu][attention]") {
  test::ParityContexts ctx;
  const int64_t n = 1000003;
  const auto x = test::random_vector<float>(n, 71, -2.0, 2.0);
  const auto x_g = test::to_gpu(ctx.gpu, x);
  // The GPU reads part of the counter from device memory (the base a replayed graph reads).
  const Buffer base(ctx.gpu, sizeof(uint64_t));
  auto* base_ptr = static_cast<uint64_t*>(base.data());
  struct Case {
    float p;
    uint64_t seed, offset;
  };
  // Offsets past 2^32 use both words of the Philox counter.
  for (const auto& c : std::vector<Case>{{0.1f, 1, 0},
                                         {0.5f, 0xdeadbeefcafeULL, (1ULL << 32) - 7},
                                         {0.3f, 42, 123456789012ULL},
                                         {0.0f, 5, 9}}) {
    DYNAMIC_SECTION("p " << c.p << " seed " << c.seed << " offset " << c.offset) {
      std::vector<float> y(n), dx(n);
      kernels::dropout_forward<float>(ctx.cpu, n, c.p, c.seed, nullptr, c.offset, x.data(),
                                      y.data());
      kernels::dropout_backward<float>(ctx.cpu, n, c.p, c.seed, nullptr, c.offset, x.data(),
                                       dx.data());
      auto y_g = test::to_gpu(ctx.gpu, std::vector<float>(n, kSentinel));
      kernels::dropout_forward<float>(ctx.gpu, n, c.p, c.seed, nullptr, c.offset, x_g.data(),
                                      y_g.data());
      test::require_bitwise_equal(host(ctx.gpu, y_g), y, "dropout_forward");
      kernels::write_u64<float>(ctx.gpu, c.offset / 3, base_ptr);
      auto dx_g = test::to_gpu(ctx.gpu, x);  // in place, the counter split over base + offset
      kernels::dropout_backward<float>(ctx.gpu, n, c.p, c.seed, base_ptr, c.offset - c.offset / 3,
                                       dx_g.data(), dx_g.data());
      test::require_bitwise_equal(host(ctx.gpu, dx_g), dx, "dropout_backward in place");
      REQUIRE(test::any_nonzero(y));
    }
  }
  // n == 0 launches nothing and touches nothing.
  auto untouched = test::to_gpu(ctx.gpu, std::vector<float>(4, 3.f));
  kernels::dropout_forward<float>(ctx.gpu, 0, 0.5f, 1, nullptr, 0, x_g.data(), untouched.data());
  test::require_bitwise_equal(host(ctx.gpu, untouched), std::vector<float>(4, 3.f), "n = 0");
}

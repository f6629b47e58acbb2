#include <catch2/catch.hpp>

#include "kernels/copy.h"
#include "kernels/dropout.h"
#include "kernels/gemm.h"
#include "kernels/init.h"
#include "lockstep/core/device.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"
#include "lockstep/core/philox.h"
#include "lockstep/core/tensor.h"
#include "lockstep/nn/optimizer.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[core][rng]") {
  // Known-answer tests from Random123's kat_vectors (philox4x32_10).
  const auto zero = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(zero.v[0] == 0x6627e8d5u);
  CHECK(zero.v[1] == 0xe169c58du);
  CHECK(zero.v[2] == 0xbc57ac4cu);
  CHECK(zero.v[3] == 0x9b00dbd8u);
  const auto ones =
      philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(ones.v[0] == 0x408f276du);
  CHECK(ones.v[1] == 0x41c83b0eu);
  CHECK(ones.v[2] == 0xa20bc7c6u);
  CHECK(ones.v[3] == 0x6d5451fdu);
  const auto pi =
      philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(pi.v[0] == 0xd16cfe09u);
  CHECK(pi.v[1] == 0x94fdccebu);
  CHECK(pi.v[2] == 0x5001e420u);
  CHECK(pi.v[3] == 0x24126ea1u);
}

TEST_CASE("fill_uniform is deterministic, in range and roughly uniform", "[core][rng]") {
  Context ctx;
  std::vector<float> a(10000), b(10000), c(10000);
  kernels::fill_uniform(ctx, 10000, 42, 7, 0, -0.5f, 0.5f, a.data());
  kernels::fill_uniform(ctx, 10000, 42, 7, 0, -0.5f, 0.5f, b.data());
  kernels::fill_uniform(ctx, 10000, 42, 8, 0, -0.5f, 0.5f, c.data());
  test::require_bitwise_equal(a, b, "same seed and stream");
  int same = 0;
  double mean = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i] >= -0.5f);
    REQUIRE(a[i] < 0.5f);
    same += a[i] == c[i];
    mean += a[i];
  }
  CHECK(same < 10);  // another stream gives other numbers
  CHECK(std::abs(mean / a.size()) < 0.01);
  // An offset continues the sequence: elements [100, 200) equal a fill starting at offset 100.
  std::vector<float> tail(100);
  kernels::fill_uniform(ctx, 100, 42, 7, 100, -0.5f, 0.5f, tail.data());
  test::require_bitwise_equal(tail, std::vector<float>(a.begin() + 100, a.begin() + 200), "offset");
}

TEST_CASE("select_device resolves flags and rejects bad ones", "[core][device]") {
  CHECK(select_device("cpu").is_cpu());
  if (cuda_device_count() == 0) {
    CHECK(select_device("auto").is_cpu());
    // The refusal says why: no CUDA support, no device, or the runtime's error (an old driver).
    const std::string why = cuda_unavailable_reason();
    CHECK_FALSE(why.empty());
    CHECK_THROWS_WITH(select_device("cuda"),
                      Contains("--device cuda") && Contains(why) && Contains("use --device cpu"));
  } else {
    CHECK(cuda_unavailable_reason().empty());
  }
  CHECK_THROWS_WITH(select_device("tpu"),
                    Contains("'tpu'") && Contains("auto, cpu, cuda or cuda:N"));
  CHECK_THROWS_AS(select_device("cuda:x"), Error);
}

TEST_CASE("Tensor resize keeps capacity and copies round-trip", "[core][tensor]") {
  Context ctx;
  Tensor<float> t(ctx, {4, 8});
  REQUIRE(t.numel() == 32);
  float* first = t.data();
  t.resize(ctx, {2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.data() == first);  // shrinking does not reallocate
  const std::vector<float> host = test::random_vector(33, 1);
  auto u = make_tensor(ctx, host, {3, 11});
  CHECK(u.shape() == Shape{3, 11});
  CHECK(to_host(ctx, u) == host);
  CHECK_THROWS_WITH(make_tensor(ctx, host, {4, 8}), Contains("(4, 8)") && Contains("33"));
  CHECK(shape_str({2, 3, 4}) == "(2, 3, 4)");
}

TEST_CASE("scale multiplies in place and out of place", "[kernels][copy]") {
  Context ctx;
  const auto x = test::random_vector<double>(37, 4);
  std::vector<double> y(37);
  kernels::scale<double>(ctx, 37, 0.25, x.data(), y.data());
  for (int i = 0; i < 37; ++i) CHECK(y[i] == x[i] / 4);  // exact: power of two
  kernels::scale<double>(ctx, 37, 3.0, y.data(), y.data());
  for (int i = 0; i < 37; ++i) CHECK(y[i] == Approx(0.75 * x[i]));
}

TEST_CASE("check_range names the field and the allowed range", "[core][error]") {
  CHECK_NOTHROW(check_range("train.lr", 0.5, 0.0, 1.0));
  CHECK_THROWS_WITH(check_range("train.lr", 1.5, 0.0, 1.0),
                    Contains("train.lr = 1.5") && Contains("[0, 1]"));
  CHECK_THROWS_WITH(check_range("model.dim", int64_t{0}, 1, 1024),
                    Contains("model.dim = 0") && Contains("[1, 1024]"));
  CHECK_THROWS_WITH(set_log_level("loud"), Contains("'loud'") && Contains("trace"));
}

TEST_CASE("A float setting accepts its documented bounds", "[core][error]") {
  // float(1e-12) < 1e-12 as a double: the bound is compared in float.
  CHECK_NOTHROW(check_range("optimizer.lr", 1e-12f, 1e-12, 100.0));
  CHECK_NOTHROW(check_range("optimizer.lr", 100.0f, 1e-12, 100.0));
  CHECK_THROWS_WITH(check_range("optimizer.lr", 0.5e-12f, 1e-12, 100.0),
                    Contains("optimizer.lr = ") && Contains("out of range"));
  nn::OptimizerConfig c;
  c.lr = 1e-12f;
  CHECK_NOTHROW(c.validate("optimizer"));
}

namespace {
// Plain triple loop: the reference for the BLAS wrapper.
template <class T>
std::vector<T> naive_gemm(bool ta, bool tb, int M, int N, int K, T alpha, const std::vector<T>& A,
                          int lda, const std::vector<T>& B, int ldb, T beta, std::vector<T> C,
                          int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        const T a = ta ? A[k * lda + i] : A[i * lda + k];
        const T b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += double(a) * double(b);
      }
      C[i * ldc + j] = static_cast<T>(alpha * acc + beta * C[i * ldc + j]);
    }
  return C;
}
}  // namespace

TEMPLATE_TEST_CASE("CPU gemm matches a triple loop for every transpose combination",
                   "[kernels][gemm]", float, double) {
  Context ctx;
  const double tol = std::is_same_v<TestType, float> ? 1e-5 : 1e-12;
  for (int combo = 0; combo < 4; ++combo) {
    const bool ta = combo & 1, tb = combo & 2;
    for (auto [M, N, K] : {std::tuple{1, 1, 1}, std::tuple{7, 5, 3}, std::tuple{33, 17, 65}}) {
      const int lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
      const auto A = test::random_vector<TestType>((ta ? K : M) * lda, 1 + combo);
      const auto B = test::random_vector<TestType>((tb ? N : K) * ldb, 2 + combo);
      auto C = test::random_vector<TestType>(M * ldc, 3 + combo);
      const auto ref = naive_gemm<TestType>(ta, tb, M, N, K, 1.5, A, lda, B, ldb, 0.5, C, ldc);
      kernels::gemm<TestType>(ctx, ta ? kernels::Trans::T : kernels::Trans::N,
                              tb ? kernels::Trans::T : kernels::Trans::N, M, N, K, 1.5, A.data(),
                              lda, B.data(), ldb, 0.5, C.data(), ldc);
      test::require_close(C, ref, tol, tol, "gemm");
    }
  }
  std::vector<float> c(4);
  CHECK_THROWS_WITH(kernels::gemm<float>(ctx, kernels::Trans::N, kernels::Trans::N, 2, 2, 2, 1.f,
                                         c.data(), 1, c.data(), 2, 0.f, c.data(), 2),
                    Contains("lda=1"));
}

TEST_CASE("copy_2d places and accumulates a block in a wider matrix", "[kernels][copy]") {
  Context ctx;
  const auto src = test::random_vector(3 * 4, 5);
  std::vector<float> dst(3 * 10, 1.0f);
  kernels::copy_2d<float>(ctx, 3, 4, src.data(), 4, dst.data() + 2, 10);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 10; ++c)
      CHECK(dst[r * 10 + c] == (c >= 2 && c < 6 ? src[r * 4 + c - 2] : 1.0f));
  kernels::copy_2d<float>(ctx, 3, 4, src.data(), 4, dst.data() + 2, 10, true);
  CHECK(dst[10 + 3] == 2 * src[4 + 1]);
  CHECK_THROWS_WITH(kernels::copy_2d<float>(ctx, 3, 4, src.data(), 3, dst.data(), 10),
                    Contains("copy_2d: ld_src = 3 is smaller than the row width cols = 4"));
  CHECK_THROWS_WITH(kernels::copy_2d<float>(ctx, -1, 4, src.data(), 4, dst.data(), 10),
                    Contains("copy_2d: rows = -1 is negative"));
}

TEST_CASE("Context random stream hands out disjoint counters and can be restored", "[core][rng]") {
  Context ctx(Device::cpu(), ContextOptions{false, 0, 77});
  CHECK(ctx.random_seed() == 77);
  CHECK(ctx.reserve_random(10) == 0);
  CHECK(ctx.reserve_random(5) == 10);
  CHECK(ctx.random_offset() == 15);
  ctx.set_random_offset(3);
  CHECK(ctx.reserve_random(1) == 3);
  // Draws through the stream are the Philox words at those counters.
  std::vector<float> a(4), b(4);
  const uint64_t first = ctx.reserve_random(4);
  kernels::fill_uniform<float>(ctx, 4, ctx.random_seed(), 0, first, 0.0f, 1.0f, a.data());
  for (int i = 0; i < 4; ++i) b[i] = uniform01_from_u32(philox_u32(77, 0, first + i));
  test::require_bitwise_equal(a, b, "fill_uniform through the context stream");
}

TEST_CASE("Random counters relative to the device base add up to the stream's counters",
          "[core][rng]") {
  Context ctx(Device::cpu(), ContextOptions{false, 0, 5});
  // Before the first sync there is no base: the offset is the counter itself.
  auto c = ctx.reserve_random_counters(6);
  CHECK(c.base == nullptr);
  CHECK(c.offset == 0);
  ctx.sync_random_base();
  REQUIRE(ctx.reserve_random_counters(0).base != nullptr);
  const uint64_t* base = ctx.reserve_random_counters(0).base;
  CHECK(*base == 6);
  c = ctx.reserve_random_counters(4);
  CHECK(c.base == base);
  CHECK(c.offset == 0);  // relative to the base: the same at every step
  CHECK(ctx.reserve_random_counters(3).offset == 4);
  CHECK(ctx.random_offset() == 13);
  ctx.sync_random_base();
  CHECK(*base == 13);
  CHECK(ctx.reserve_random_counters(2).offset == 0);
  ctx.sync_random_base();
  ctx.sync_random_base();  // nothing reserved since: no write
  CHECK(*base == 15);
  // A restored offset below the base still gives the right counter (modulo 2^64).
  ctx.set_random_offset(2);
  c = ctx.reserve_random_counters(1);
  CHECK(*c.base + c.offset == 2);
  // What dropout draws through {base, offset} is what it draws at the plain counter.
  std::vector<float> x(9, 1.0f), y(9), z(9);
  c = ctx.reserve_random_counters(9);
  kernels::dropout_forward<float>(ctx, 9, 0.5f, 5, c.base, c.offset, x.data(), y.data());
  kernels::dropout_forward<float>(ctx, 9, 0.5f, 5, nullptr, 3, x.data(), z.data());
  test::require_bitwise_equal(y, z, "dropout at base + offset");
}

#if LOCKSTEP_NCCL_ENABLED
#include "comm/nccl_check.h"
TEST_CASE("LOCKSTEP_NCCL_CHECK names the NCCL error and the call", "[core][errors]") {
  CHECK_THROWS_WITH(
      [] { LOCKSTEP_NCCL_CHECK(ncclInvalidArgument); }(),
      Contains("NCCL error 4") && Contains("ncclInvalidArgument") && Contains("core_test.cpp"));
  CHECK_NOTHROW([] { LOCKSTEP_NCCL_CHECK(ncclInProgress); }());  // non-blocking work still running
}
#endif

// CUDA vs CPU for the core kernels (gemm, fill_uniform/fill_constant, copy_2d) and for whole
// layers and the EmbeddingMlp model: identical initial weights, forward/backward and training
// steps within fp32 tolerance.

#include <catch2/catch.hpp>

#include <cstdint>

#include "lockstep/config.h"
#if LOCKSTEP_CUDA_ENABLED  // a CPU-only build (LOCKSTEP_WITH_CUDA=OFF) has no CUDA runtime
#include <cuda_runtime.h>
#endif

#include "gpu_util.h"
#include "kernels/copy.h"
#include "kernels/gemm.h"
#include "kernels/init.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"

using namespace lockstep;

#if LOCKSTEP_CUDA_ENABLED
TEST_CASE("A CUDA context keeps freed memory in the stream-ordered pool", "[gpu][core]") {
  test::ParityContexts ctx;
  cudaMemPool_t pool = nullptr;
  REQUIRE(cudaDeviceGetDefaultMemPool(&pool, ctx.gpu.device().index) == cudaSuccess);
  uint64_t threshold = 0;
  REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) ==
          cudaSuccess);
  CHECK(threshold == UINT64_MAX);
  // Freed and synchronised, 64 MiB stay reserved for the next allocation.
  { Tensor<float> big(ctx.gpu, {int64_t{16} << 20}); }
  ctx.gpu.synchronize();
  uint64_t reserved = 0;
  REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) ==
          cudaSuccess);
  CHECK(reserved >= (uint64_t{64} << 20));
}
#endif

TEST_CASE("A steady-state CUDA training step allocates no device memory", "[gpu][core]") {
  // Tensors grow to the largest shape seen and are reused; the workspace too. (The host side
  // is checked on the CPU: test/unit/allocation_test.cpp.)
  test::ParityContexts ctx;
  for (int which = 0; which < 3; ++which) {
    INFO("model " << which);
    std::unique_ptr<models::Model<float>> model;
    if (which == 0) model = test::fixture_model(ctx.gpu);
    if (which == 1) model = test::fixture_din(ctx.gpu);
    if (which == 2) model = test::fixture_bst(ctx.gpu);
    train::LocalTrainer<float> trainer(*model, ctx.gpu);
    const auto batches = test::fixture_batches(3, 300);
    for (int pass = 0; pass < 2; ++pass)
      for (const auto& b : batches) trainer.step(b);
    const uint64_t before = ctx.gpu.allocations();
    for (const auto& b : batches) trainer.step(b);
    CHECK(ctx.gpu.allocations() == before);
  }
}

TEST_CASE("CUDA gemm matches the CPU for every transpose combination", "[gpu][gemm]") {
  test::ParityContexts ctx;
  using kernels::Trans;
  for (int combo = 0; combo < 4; ++combo) {
    const Trans ta = combo & 1 ? Trans::T : Trans::N, tb = combo & 2 ? Trans::T : Trans::N;
    for (auto [M, N, K] : {std::tuple{1, 1, 1}, std::tuple{7, 5, 3}, std::tuple{257, 33, 129},
                           std::tuple{4096, 200, 152}, std::tuple{3, 4, 0}}) {
      INFO("combo " << combo << " M=" << M << " N=" << N << " K=" << K);
      const int64_t lda = (ta == Trans::N ? K : M) + 1, ldb = (tb == Trans::N ? N : K) + 2,
                    ldc = N + 3;
      const auto A = test::random_vector<float>((ta == Trans::N ? M : K) * lda, 1 + combo);
      const auto B = test::random_vector<float>((tb == Trans::N ? K : N) * ldb, 2 + combo);
      auto C = test::random_vector<float>(M * ldc, 3 + combo);
      auto dA = test::to_gpu(ctx.gpu, A), dB = test::to_gpu(ctx.gpu, B),
           dC = test::to_gpu(ctx.gpu, C);
      kernels::gemm<float>(ctx.cpu, ta, tb, M, N, K, 0.75f, A.data(), lda, B.data(), ldb, 0.5f,
                           C.data(), ldc);
      kernels::gemm<float>(ctx.gpu, ta, tb, M, N, K, 0.75f, dA.data(), lda, dB.data(), ldb, 0.5f,
                           dC.data(), ldc);
      // Sums of K products of values in [-1, 1]: error grows like sqrt(K) ulps.
      test::require_close(to_host(ctx.gpu, dC), C, 1e-5 * std::sqrt(double(K) + 1), 1e-5, "gemm");
    }
  }
}

TEST_CASE("CUDA fill_uniform and fill_constant are bitwise equal to the CPU", "[gpu][init]") {
  test::ParityContexts ctx;
  for (int64_t n : {1, 7, 1000, (1 << 20) + 3}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{12345}}) {
      std::vector<float> ref(n);
      kernels::fill_uniform<float>(ctx.cpu, n, 42, 9, offset, -0.3f, 0.7f, ref.data());
      Tensor<float> got(ctx.gpu, {n});
      kernels::fill_uniform<float>(ctx.gpu, n, 42, 9, offset, -0.3f, 0.7f, got.data());
      test::require_bitwise_equal(to_host(ctx.gpu, got), ref, "fill_uniform");
    }
    Tensor<float> c(ctx.gpu, {n});
    kernels::fill_constant<float>(ctx.gpu, n, 2.5f, c.data());
    test::require_bitwise_equal(to_host(ctx.gpu, c), std::vector<float>(n, 2.5f), "fill_constant");
  }
}

TEST_CASE("CUDA copy_2d places and accumulates blocks like the CPU", "[gpu][copy]") {
  test::ParityContexts ctx;
  for (auto [rows, cols, ld_src, ld_dst] :
       {std::tuple{1, 1, 1, 1}, std::tuple{37, 16, 16, 152}, std::tuple{4096, 8, 9, 200}}) {
    const auto src = test::random_vector<float>(rows * ld_src, 1);
    auto dst = test::random_vector<float>(rows * ld_dst, 2);
    auto d_src = test::to_gpu(ctx.gpu, src), d_dst = test::to_gpu(ctx.gpu, dst);
    const int64_t col0 = ld_dst > cols ? 1 : 0;  // a block that does not start at column 0
    for (bool acc : {false, true}) {
      kernels::copy_2d<float>(ctx.cpu, rows, cols, src.data(), ld_src, dst.data() + col0, ld_dst,
                              acc);
      kernels::copy_2d<float>(ctx.gpu, rows, cols, d_src.data(), ld_src, d_dst.data() + col0,
                              ld_dst, acc);
      test::require_bitwise_equal(to_host(ctx.gpu, d_dst), dst, acc ? "accumulate" : "copy");
    }
  }
}

TEST_CASE("CUDA scale is bitwise equal to the CPU", "[gpu][copy]") {
  test::ParityContexts ctx;
  for (int64_t n : {1, 1000, (1 << 20) + 7}) {
    const auto x = test::random_vector<float>(n, 8);
    std::vector<float> ref(n);
    kernels::scale<float>(ctx.cpu, n, 0.37f, x.data(), ref.data());
    auto d = test::to_gpu(ctx.gpu, x);
    kernels::scale<float>(ctx.gpu, n, 0.37f, d.data(), d.data());
    test::require_bitwise_equal(to_host(ctx.gpu, d), ref, "scale in place");
  }
}

TEST_CASE("EmbeddingMlp on CUDA: identical initial weights, close logits and training",
          "[gpu][model]") {
  test::ParityContexts ctx;
  for (auto act : {nn::ActivationKind::PReLU, nn::ActivationKind::Dice}) {
    INFO(nn::activation_name(act));
    auto cpu = test::fixture_model(ctx.cpu, act);
    auto gpu = test::fixture_model(ctx.gpu, act);
    test::require_bitwise_equal(test::all_parameters(ctx.gpu, *gpu),
                                test::all_parameters(ctx.cpu, *cpu), "initial parameters");
    const data::Batch batch = test::fixture_batch(0, 513, 20);
    const auto z_cpu = to_host(ctx.cpu, cpu->forward(ctx.cpu, batch, true), batch.size);
    const auto z_gpu = to_host(ctx.gpu, gpu->forward(ctx.gpu, batch, true), batch.size);
    test::require_close(z_gpu, z_cpu, 1e-5, 1e-4, "logits");

    train::LocalTrainer<float> t_cpu(*cpu, ctx.cpu), t_gpu(*gpu, ctx.gpu);
    for (int step = 0; step < 5; ++step) {
      const data::Batch b = test::fixture_batch(1000 * (step + 1), 256 + step, 20);
      const double l_cpu = t_cpu.step(b), l_gpu = t_gpu.step(b);
      CHECK(l_gpu == Approx(l_cpu).epsilon(1e-4));
    }
    // Adam/Adagrad normalise steps, so tiny differences in small gradients can move a weight by
    // up to ~lr per step: compare with an absolute tolerance of a few learning rates.
    test::require_close(test::all_parameters(ctx.gpu, *gpu), test::all_parameters(ctx.cpu, *cpu),
                        5e-3, 1e-3, "parameters after 5 steps");
  }
}

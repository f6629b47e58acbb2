// The CPU kernels' threads (kernels/cpu/parallel.h): every chunk once, fixed chunks, exceptions,
// concurrent callers; and whole models trained with 1, 2 and 3 kernel threads agree bitwise.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/activation.h"
#include "kernels/bias.h"
#include "kernels/cpu/parallel.h"
#include "kernels/din_unit.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/layer_norm.h"
#include "kernels/softmax.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "test_util.h"

using namespace lockstep;

TEST_CASE("parallel_for runs every fixed chunk exactly once", "[kernels][parallel]") {
  for (int threads : {1, 2, 5}) {
    Context ctx(Device::cpu(), ContextOptions{false, threads});
    std::vector<std::atomic<int>> hits(1000);
    std::vector<std::pair<int64_t, int64_t>> chunks(100, {-1, -1});
    kernels::cpu::parallel_for(ctx, 1000, 37, [&](int64_t b, int64_t e) {
      chunks[static_cast<size_t>(b / 37)] = {b, e};
      for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    });
    for (const auto& h : hits) REQUIRE(h == 1);
    for (int64_t c = 0; c < 28; ++c) {  // ceil(1000 / 37) chunks, boundaries from n and grain
      CHECK(chunks[c].first == c * 37);
      CHECK(chunks[c].second == std::min<int64_t>(1000, (c + 1) * 37));
    }
  }
}

TEST_CASE("parallel_for after idle gaps: helpers waking late join the current kernel or none",
          "[kernels][parallel]") {
  // Gaps longer than the helpers' 50 us spin put them to sleep; the caller then may take every
  // chunk itself and return while a helper is still waking up. That helper must not run a chunk
  // of the finished kernel (it was closed) and may join the next one.
  Context ctx(Device::cpu(), ContextOptions{false, 3});
  uint32_t rng = 12345;
  for (int rep = 0; rep < 300; ++rep) {
    const int64_t n = 1 + rep % 7;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    kernels::cpu::parallel_for(ctx, n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
    });
    for (const auto& h : hits) REQUIRE(h == 1);
    rng = rng * 1664525u + 1013904223u;
    std::this_thread::sleep_for(std::chrono::microseconds(rng % 3 == 0 ? 0 : rng % 200));
  }
}

TEST_CASE("parallel_for rethrows a chunk's exception after the others ran; callers may overlap",
          "[kernels][parallel]") {
  Context ctx(Device::cpu(), ContextOptions{false, 4});
  std::atomic<int> ran{0};
  CHECK_THROWS_WITH(kernels::cpu::parallel_for(ctx, 64, 1,
                                               [&](int64_t b, int64_t) {
                                                 ++ran;
                                                 if (b == 7) throw std::runtime_error("chunk 7");
                                               }),
                    "chunk 7");
  CHECK(ran == 64);
  // Two threads submitting at once: one gets the pool, the other runs its chunks itself.
  std::vector<int64_t> sums(2, 0);
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t)
    callers.emplace_back([&, t] {
      Context own(Device::cpu(), ContextOptions{false, 4});
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<int64_t> part(10, 0);
        kernels::cpu::parallel_for(own, 1000, 100, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) part[static_cast<size_t>(b / 100)] += i;
        });
        for (int64_t p : part) sums[static_cast<size_t>(t)] += p;
      }
    });
  for (auto& c : callers) c.join();
  CHECK(sums[0] == 200 * 499500);
  CHECK(sums[1] == 200 * 499500);
}

TEST_CASE("Models train bitwise alike with 1, 2 and 3 kernel threads", "[kernels][parallel]") {
  const auto train = [](int threads, int which) {
    Context ctx(Device::cpu(), ContextOptions{false, threads});
    std::unique_ptr<models::Model<float>> model;
    if (which == 0) model = test::fixture_din(ctx);
    if (which == 1) model = test::fixture_bst(ctx);
    if (which == 2) model = test::fixture_dual(ctx);
    train::LocalTrainer<float> trainer(*model, ctx);
    for (const auto& b : test::fixture_batches(3, 300)) trainer.step(b);
    return test::all_parameters(ctx, *model);
  };
  for (int which = 0; which < 3; ++which) {
    INFO("model " << which);
    const auto one = train(1, which);
    test::require_bitwise_equal(train(2, which), one, "2 threads");
    test::require_bitwise_equal(train(3, which), one, "3 threads");
  }
}

namespace {
/// Runs `op(ctx)` on contexts of 1, 2 and 3 kernel threads; the outputs it returns are equal
/// bitwise.
template <class Op>
void require_thread_independent(const char* what, Op op) {
  INFO(what);
  Context c1(Device::cpu(), ContextOptions{false, 1}), c2(Device::cpu(), ContextOptions{false, 2}),
      c3(Device::cpu(), ContextOptions{false, 3});
  const std::vector<float> one = op(c1);
  REQUIRE(!one.empty());
  test::require_bitwise_equal(op(c2), one, "2 threads");
  test::require_bitwise_equal(op(c3), one, "3 threads");
}

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& e : v) {
    x = x * 1664525u + 1013904223u;
    e = static_cast<float>(static_cast<int32_t>(x >> 8) % 2001 - 1000) / 1000.0f;
  }
  return v;
}
}  // namespace

TEST_CASE("Blocked kernels give the same bits with 1, 2 and 3 threads, and the right values",
          "[kernels][parallel]") {
  using kernels::Trans;
  // GEMMs cut into blocks of rows, of columns and of K (each at least 2^20 multiply-adds).
  struct Shape {
    int64_t M, N, K;
    Trans ta, tb;
  };
  for (const Shape& s :
       {Shape{2048, 64, 64, Trans::N, Trans::N}, Shape{2048, 48, 40, Trans::T, Trans::T},
        Shape{16, 600, 700, Trans::N, Trans::T}, Shape{16, 24, 40000, Trans::T, Trans::N}}) {
    const auto A = random_vector(static_cast<size_t>(s.M * s.K), 1);
    const auto B = random_vector(static_cast<size_t>(s.K * s.N), 2);
    const auto C0 = random_vector(static_cast<size_t>(s.M * s.N), 3);
    const int64_t lda = s.ta == Trans::N ? s.K : s.M, ldb = s.tb == Trans::N ? s.N : s.K;
    const auto run = [&](const Context& ctx) {
      std::vector<float> C = C0;
      kernels::gemm<float>(ctx, s.ta, s.tb, s.M, s.N, s.K, 0.5f, A.data(), lda, B.data(), ldb,
                           0.25f, C.data(), s.N);
      return C;
    };
    require_thread_independent("gemm", run);
    // Against a plain double-precision product.
    Context ctx;
    const auto C = run(ctx);
    for (int64_t i = 0; i < s.M; i += 7)
      for (int64_t j = 0; j < s.N; j += 5) {
        double sum = 0;
        for (int64_t k = 0; k < s.K; ++k) {
          const double a = s.ta == Trans::N ? A[i * lda + k] : A[k * lda + i];
          const double b = s.tb == Trans::N ? B[k * ldb + j] : B[j * ldb + k];
          sum += a * b;
        }
        REQUIRE(C[i * s.N + j] == Approx(0.5 * sum + 0.25 * C0[i * s.N + j]).margin(1e-3));
      }
  }
  // Row-wise kernels with block partial sums (PReLU's dalpha), and plain row-wise ones.
  const int64_t rows = 60000, cols = 40;
  const auto x = random_vector(rows * cols, 4), dy = random_vector(rows * cols, 5);
  const auto alpha = random_vector(cols, 6);
  require_thread_independent("prelu", [&](const Context& ctx) {
    std::vector<float> y(x.size()), dx(x.size()), dalpha(cols, 1.0f);
    kernels::prelu_forward<float>(ctx, rows, cols, x.data(), alpha.data(), y.data());
    kernels::prelu_backward<float>(ctx, rows, cols, x.data(), alpha.data(), dy.data(), dx.data(),
                                   dalpha.data());
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dalpha.begin(), dalpha.end());
    return y;
  });
  require_thread_independent("layer norm, bias_grad", [&](const Context& ctx) {
    const auto gamma = random_vector(cols, 9), beta = random_vector(cols, 10);
    std::vector<float> y(x.size()), mean(rows), rstd(rows), dx(x.size()), dgamma(cols, 0.5f),
        dbeta(cols, 0.25f), dbias(cols, 1.0f);
    kernels::layer_norm_forward<float>(ctx, rows, cols, 1e-5f, x.data(), gamma.data(), beta.data(),
                                       y.data(), mean.data(), rstd.data());
    kernels::layer_norm_backward<float>(ctx, rows, cols, x.data(), gamma.data(), mean.data(),
                                        rstd.data(), dy.data(), dx.data(), dgamma.data(),
                                        dbeta.data());
    kernels::bias_grad<float>(ctx, rows, cols, dy.data(), dbias.data());
    for (const auto* v : {&mean, &rstd, &dx, &dgamma, &dbeta, &dbias})
      y.insert(y.end(), v->begin(), v->end());
    return y;
  });
  require_thread_independent("masked softmax", [&](const Context& ctx) {
    std::vector<int64_t> lengths(rows / 20);
    for (size_t i = 0; i < lengths.size(); ++i) lengths[i] = static_cast<int64_t>(i % 41);
    std::vector<float> y(x.size()), dx(x.size());
    kernels::masked_softmax_forward<float>(ctx, rows / 20 * 20, cols, 20, lengths.data(), x.data(),
                                           y.data());
    kernels::masked_softmax_backward<float>(ctx, rows, cols, y.data(), dy.data(), dx.data());
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  });
  require_thread_independent("din unit", [&](const Context& ctx) {
    // 300 samples of 30 positions: tiles of 17 samples, weight-gradient chunks of 136 (3 chunks,
    // the last one short); strided q and k, accumulating dq and dk.
    const int64_t B = 300, Tn = 30, D = 6, H = 20, ld = 9;
    const auto q = random_vector(B * ld, 11), k = random_vector(B * Tn * ld, 12);
    const auto W = random_vector(4 * D * H, 13), bias = random_vector(H, 14);
    const auto dh = random_vector(B * Tn * H, 15);
    std::vector<float> h(B * Tn * H), dW(4 * D * H, 0.5f), dbias(H, 0.25f), dq(B * ld, 1.0f),
        dk(B * Tn * ld, -1.0f);
    kernels::din_unit_forward<float>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                     bias.data(), h.data());
    kernels::din_unit_backward<float>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                      dh.data(), dW.data(), dbias.data(), dq.data(), ld, dk.data(),
                                      ld);
    // The PReLU-fused pair (dalpha: double sums per chunk).
    const auto alpha = random_vector(H, 16);
    std::vector<float> a(h.size()), da = dh, dalpha(H, 0.5f);
    kernels::din_unit_prelu_forward<float>(ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(),
                                           bias.data(), alpha.data(), h.data(), a.data());
    kernels::din_unit_prelu_backward<float>(
        ctx, B, Tn, D, H, q.data(), ld, k.data(), ld, W.data(), h.data(), alpha.data(), da.data(),
        dW.data(), dbias.data(), dalpha.data(), dq.data(), ld, dk.data(), ld);
    for (const auto* v : {&a, &dW, &dbias, &dalpha, &dq, &dk})
      h.insert(h.end(), v->begin(), v->end());
    return h;
  });
  require_thread_independent("pooled lookup", [&](const Context& ctx) {
    const int64_t bags = 20000, dim = 16, table_rows = 5000;
    const auto table = random_vector(table_rows * dim, 7);
    const auto dout = random_vector(bags * dim, 8);
    std::vector<int64_t> offsets = {0};
    std::vector<uint64_t> ids;
    for (int64_t b = 0; b < bags; ++b) {
      for (int64_t j = 0; j < b % 7; ++j)
        ids.push_back(static_cast<uint64_t>((b * 31 + j * 17) % table_rows));
      offsets.push_back(static_cast<int64_t>(ids.size()));
    }
    const auto nnz = static_cast<int64_t>(ids.size());  // > 8192: sorted blocks merged
    std::vector<float> out(bags * dim), rows(nnz * dim);
    std::vector<uint64_t> unique(nnz);
    int64_t count = 0;
    kernels::pooled_lookup_forward<float>(ctx, kernels::Pooling::Mean, bags, dim, table.data(),
                                          table_rows, offsets.data(), ids.data(), out.data(), dim);
    kernels::pooled_lookup_backward<float>(ctx, kernels::Pooling::Mean, bags, dim, offsets.data(),
                                           ids.data(), nnz, dout.data(), dim, unique.data(),
                                           rows.data(), &count);
    REQUIRE(count == table_rows);
    REQUIRE(std::is_sorted(unique.begin(), unique.begin() + count));
    out.insert(out.end(), rows.begin(), rows.begin() + count * dim);
    for (int64_t u = 0; u < count; ++u) out.push_back(static_cast<float>(unique[u]));
    return out;
  });
}

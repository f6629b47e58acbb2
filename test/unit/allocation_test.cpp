// A steady-state training step allocates nothing (issue 14): once the shapes have been seen,
// layers reuse their tensors, kernels their scratch, and the thread pool takes its jobs by
// reference. Counted by replacing the global operator new of this test binary (only while
// `counting` is set; by any thread: the kernel threads too) and by the context's count of
// tensor and workspace buffers (Context::allocations).

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#include "kernels/attention.h"
#include "kernels/din_unit.h"
#include "kernels/gemm.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "train/fault_injection.h"
#include "train/step.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  if (void* p = std::malloc(n > 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
// The nothrow forms too (Catch2 uses them): left to a sanitizer's own allocator, their blocks
// would come back through the free() below.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  return std::malloc(n > 0 ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
  return ::operator new(n, t);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace lockstep;

namespace {

std::unique_ptr<models::Model<float>> make_model(const Context& ctx, int which) {
  static const embedding::AccessorConfig accessor;
  switch (which) {
    case 0:
      return test::fixture_model(ctx);
    case 1:
      return test::fixture_din(ctx);
    case 2:
      return test::fixture_bst(ctx);
    case 3:
      return test::fixture_dual(ctx);
    default:
      return test::fixture_dynamic_model(ctx, accessor);
  }
}

/// Allocations (operator new, and the tensor and workspace buffers of the contexts) made by
/// run(batch, next) for each batch of a third pass over `batches` (the first two see every
/// shape; `next` is the batch after it, nullptr for the last), and the buffers allocated by one
/// step of a batch as large as two of them (it grows the tensors: the counter counts).
template <class Run>
std::pair<long, long> count_allocations(std::vector<const Context*> contexts, const Run& run) {
  const auto buffers = [&] {
    uint64_t n = 0;
    for (const Context* c : contexts) n += c->allocations();
    return n;
  };
  const auto batches = test::fixture_batches(3, 300);
  const auto pass = [&] {
    for (size_t i = 0; i < batches.size(); ++i)
      run(batches[i], i + 1 < batches.size() ? &batches[i + 1] : nullptr);
  };
  pass();
  pass();
  allocations = 0;
  uint64_t before = buffers();
  counting = true;
  pass();
  counting = false;
  const long steady = allocations.load() + static_cast<long>(buffers() - before);
  const data::Batch larger = test::concat({batches[0], batches[1]});
  before = buffers();
  run(larger, nullptr);
  return {steady, static_cast<long>(buffers() - before)};
}

const char* const kModels[] = {"embedding_mlp", "din", "bst", "dual", "embedding_mlp, dynamic"};

}  // namespace

TEST_CASE("A steady-state training step allocates nothing on the host", "[train][parallel]") {
  for (int which = 0; which < 5; ++which) {
    DYNAMIC_SECTION(kModels[which] << ", local trainer") {
      Context ctx(Device::cpu(), ContextOptions{false, 2});
      const auto model = make_model(ctx, which);
      train::LocalTrainer<float> trainer(*model, ctx);
      const auto [steady, growing] = count_allocations(
          {&ctx}, [&](const data::Batch& b, const data::Batch*) { trainer.step(b); });
      CHECK(steady == 0);
      CHECK(growing > 0);
    }
    DYNAMIC_SECTION(kModels[which] << ", lockstep step (1 rank)") {
      Context ctx(Device::cpu(), ContextOptions{false, 2});
      const auto model = make_model(ctx, which);
      const auto comm = comm::create_communicator("local", ctx.device());
      train::LockstepStep step(*model, *comm, ctx);
      const train::FaultInjection no_fault;
      uint64_t n = 0;
      const auto [steady, growing] = count_allocations(
          {&ctx, &step.ahead_context()}, [&](const data::Batch& b, const data::Batch* next) {
            train::StepInput input;
            input.step = n++;
            input.has_next = true;
            step.run(b, input, no_fault, next);  // the next batch staged ahead too
          });
      CHECK(steady == 0);
      CHECK(growing > 0);
      CHECK(step.steps_staged_ahead() > 0);
    }
  }
}

TEST_CASE("Kernel scratch is sized for every thread up front, whichever threads run the chunks",
          "[train][parallel]") {
  // Warmed up on one thread (a 1-thread context: the caller runs every chunk), then run on two:
  // the pool's worker now runs chunks it never ran before. Scratch that a thread grew inside a
  // chunk (a thread_local) would be allocated then; LOCKSTEP_SLOT_VECTORS sized it for every
  // thread before the first call's chunks.
  Context one(Device::cpu(), ContextOptions{false, 1}),
      two(Device::cpu(), ContextOptions{false, 2});
  const int64_t B = 400, Tn = 50, D = 16, H = 40, L = 20, heads = 4, dh = 8;
  std::vector<float> q(B * D, 0.5f), k(B * Tn * D, 0.25f), W(4 * D * H, 0.1f), bias(H, 0.f),
      alpha(H, 0.25f), h(B * Tn * H), a(B * Tn * H), dW(4 * D * H), db(H), dalpha(H), dq(B * D),
      dk(B * Tn * D);
  std::vector<float> qkv(B * L * 3 * heads * dh, 0.1f), probs(B * heads * L * L),
      out(B * L * heads * dh), ds(B * heads * L * L), dqkv(qkv.size());
  const std::vector<int64_t> lengths(B, L);
  // A GEMM on both threads first: what the BLAS library sets up per thread is not this test's.
  std::vector<float> gA(512 * 64, 1.f), gB(64 * 512, 1.f), gC(512 * 512);
  kernels::gemm<float>(two, kernels::Trans::N, kernels::Trans::N, 512, 512, 64, 1.f, gA.data(), 64,
                       gB.data(), 512, 0.f, gC.data(), 512);
  const auto run = [&](const Context& ctx) {
    kernels::din_unit_prelu_forward<float>(ctx, B, Tn, D, H, q.data(), D, k.data(), D, W.data(),
                                           bias.data(), alpha.data(), h.data(), a.data());
    kernels::din_unit_prelu_backward<float>(ctx, B, Tn, D, H, q.data(), D, k.data(), D, W.data(),
                                            h.data(), alpha.data(), a.data(), dW.data(), db.data(),
                                            dalpha.data(), dq.data(), D, dk.data(), D);
    kernels::attention_forward<float>(ctx, B, L, heads, dh, 0.35f, lengths.data(), qkv.data(),
                                      probs.data(), out.data());
    kernels::attention_backward<float>(ctx, B, L, heads, dh, 0.35f, lengths.data(), qkv.data(),
                                       probs.data(), out.data(), ds.data(), dqkv.data());
  };
  run(one);
  allocations = 0;
  counting = true;
  for (int i = 0; i < 5; ++i) run(two);
  counting = false;
  CHECK(allocations.load() == 0);
}

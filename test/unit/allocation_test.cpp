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

/// Allocations (operator new, and the context's tensor and workspace buffers) made by
/// run(batch) for each batch of a third pass over `batches` (the first two see every shape), and
/// the context's buffers allocated by one step of a batch as large as two of them (it grows the
/// tensors: the counter counts).
template <class Run>
std::pair<long, long> count_allocations(const Context& ctx, const Run& run) {
  const auto batches = test::fixture_batches(3, 300);
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& b : batches) run(b);
  allocations = 0;
  uint64_t buffers = ctx.allocations();
  counting = true;
  for (const auto& b : batches) run(b);
  counting = false;
  const long steady = allocations.load() + static_cast<long>(ctx.allocations() - buffers);
  const data::Batch larger = test::concat({batches[0], batches[1]});
  buffers = ctx.allocations();
  run(larger);
  return {steady, static_cast<long>(ctx.allocations() - buffers)};
}

const char* const kModels[] = {"embedding_mlp", "din", "bst", "dual", "embedding_mlp, dynamic"};

}  // namespace

TEST_CASE("A steady-state training step allocates nothing on the host", "[train][parallel]") {
  for (int which = 0; which < 5; ++which) {
    DYNAMIC_SECTION(kModels[which] << ", local trainer") {
      Context ctx(Device::cpu(), ContextOptions{false, 2});
      const auto model = make_model(ctx, which);
      train::LocalTrainer<float> trainer(*model, ctx);
      const auto [steady, growing] =
          count_allocations(ctx, [&](const data::Batch& b) { trainer.step(b); });
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
      const auto [steady, growing] = count_allocations(ctx, [&](const data::Batch& b) {
        train::StepInput input;
        input.step = n++;
        input.has_next = true;
        step.run(b, input, no_fault);
      });
      CHECK(steady == 0);
      CHECK(growing > 0);
    }
  }
}

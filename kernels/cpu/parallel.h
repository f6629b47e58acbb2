#pragma once
// The CPU kernels' threads (issue 14, docs/performance.md "Threads on the CPU"): parallel_for
// over FIXED chunks. [0, n) is cut into chunks of `grain` (the last one shorter) that depend on
// n and grain only, each chunk is run exactly once by one thread, and a kernel that keeps
// whatever it computes per chunk separate (disjoint outputs, or per-chunk partial sums added in
// chunk order afterwards) gives the same bits with 1, 2 or N threads.
//
// One pool per process: one worker per CPU of the process's affinity mask (mpirun's binding:
// the rank's cores), less one, started on first use, the caller taking chunks too. A kernel called
// while another thread's kernel holds the pool runs its chunks itself, in order (same results, no
// waiting). OpenBLAS runs single-threaded beside it (lockstep/core/context.cpp): the GEMMs are
// split into fixed row blocks here instead, so the two never oversubscribe the cores.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lockstep/core/context.h"

namespace lockstep::kernels::cpu {

/// Threads the CPU kernels of ctx use: ctx.options().cpu_threads, or every CPU the process may
/// run on (its affinity mask) when it is 0.
int kernel_threads(const Context& ctx);

/// A non-owning reference to a callable taking a chunk index: unlike std::function it never
/// allocates (a kernel's lambda capturing three references would not fit std::function's small
/// buffer), so that a steady-state step allocates nothing. The callable must outlive the call.
class ChunkRef {
 public:
  template <class F>
  ChunkRef(const F& f)  // NOLINT: implicit, as std::function's
      : object_(&f), call_([](const void* o, int64_t c) { (*static_cast<const F*>(o))(c); }) {}
  void operator()(int64_t c) const { call_(object_, c); }

 private:
  const void* object_;
  void (*call_)(const void*, int64_t);
};

/// Runs chunk(c) for c in [0, chunks) on up to `threads` threads (the caller's included);
/// returns when all are done. The first exception a chunk throws is rethrown (the others run).
void run_chunks(int threads, int64_t chunks, ChunkRef chunk);

/// f(begin, end) for each chunk [c · grain, min(n, (c + 1) · grain)) of [0, n).
template <class F>
void parallel_for(const Context& ctx, int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t chunks = (n + grain - 1) / grain;
  const int threads = kernel_threads(ctx);
  if (chunks == 1 || threads <= 1) {
    for (int64_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  const auto chunk = [&](int64_t c) { f(c * grain, std::min(n, (c + 1) * grain)); };
  run_chunks(threads, chunks, chunk);
}

/// A grain for row-wise work of `cost` (about: elements or multiply-adds) per row: chunks of at
/// least ~32k units, so that a chunk outweighs handing it to a thread. A function of the shape
/// only.
inline int64_t grain_for(int64_t cost_per_row) {
  constexpr int64_t kChunkCost = int64_t{1} << 15;
  return std::max<int64_t>(1, kChunkCost / std::max<int64_t>(cost_per_row, 1));
}

/// Declares `name`, a std::vector<Type> kept between a kernel's calls on the calling thread, so
/// that a steady-state step allocates nothing (size it with assign/resize on each call). It is a
/// reference to a function-local thread_local: a lambda naming the thread_local itself would see
/// the copy of whichever pool thread runs it, not the caller's.
#define LOCKSTEP_KEPT_VECTOR(Type, name)      \
  thread_local std::vector<Type> name##_kept; \
  std::vector<Type>& name = name##_kept

/// The number of threads that may run the chunks of one parallel_for (the caller and the pool's
/// workers), and which of them the calling thread is: 0 for any thread that is not a pool worker
/// (the caller of a kernel), 1.. for the workers. For scratch that each thread of a parallel_for
/// needs: see LOCKSTEP_SLOT_VECTORS.
int pool_slots();
int pool_slot();

/// Grows each of `slots` (one vector per pool slot) to at least n elements.
template <class T>
void size_slots(std::vector<std::vector<T>>& slots, size_t n) {
  slots.resize(static_cast<size_t>(pool_slots()));
  for (auto& s : slots)
    if (s.size() < n) s.resize(n);
}

/// Declares `name`, kept between calls like LOCKSTEP_KEPT_VECTOR: one std::vector<Type> of at
/// least n elements per pool slot, sized here, BEFORE the parallel_for; a chunk takes its
/// thread's with `name[pool_slot()].data()` and must not grow it. Sized up front for every
/// thread, the scratch does not depend on which threads happen to run the chunks, so a steady
/// state allocates nothing (a thread_local grown inside a chunk would allocate the first time
/// a chunk of that size lands on a thread that had none).
#define LOCKSTEP_SLOT_VECTORS(Type, name, n)     \
  LOCKSTEP_KEPT_VECTOR(std::vector<Type>, name); \
  ::lockstep::kernels::cpu::size_slots(name, static_cast<size_t>(n))

/// Per-column sums over `rows` rows, the same bits with any thread count: the rows are cut into
/// fixed blocks of `grain`; add_block(r0, r1, sums) adds rows [r0, r1) into its block's `width`
/// double sums (zeroed); the blocks are then added in block order and finish(c, total) gets each
/// column's total.
template <class AddBlock, class Finish>
void column_sums(const Context& ctx, int64_t rows, int64_t grain, int64_t width,
                 AddBlock&& add_block, Finish&& finish) {
  const int64_t blocks = (rows + grain - 1) / grain;
  LOCKSTEP_KEPT_VECTOR(double, partial);
  partial.assign(static_cast<size_t>(blocks * width), 0.0);
  parallel_for(ctx, rows, grain, [&](int64_t r0, int64_t r1) {
    add_block(r0, r1, partial.data() + (r0 / grain) * width);
  });
  for (int64_t c = 0; c < width; ++c) {
    double total = 0.0;
    for (int64_t b = 0; b < blocks; ++b) total += partial[b * width + c];
    finish(c, total);
  }
}

}  // namespace lockstep::kernels::cpu

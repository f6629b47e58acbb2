// lockstep's CUDA emulator (docs/cuda_emulation.md): a grid's threads as fibers.
//
// The threads of one block run on the calling OS thread, one after the other, each on a stack of
// its own, and switch only where a GPU's threads must meet: __syncthreads (all threads of the
// block that have not exited), a warp's shuffles and __syncwarp (the lanes of the mask), and a
// spin wait's __nanosleep. A thread that meets no one runs start to finish in one go. Blocks run
// one after another, so `__shared__` arrays (static locals here) are shared by a block's threads.
// Undefined behaviour a GPU may hang on or compute garbage from is stopped with a message:
// threads that wait on each other forever, a warp collective whose mask names an exited lane.
//
// The order in which threads and blocks run is LOCKSTEP_EMU_SCHEDULE's (shuffled by default, so
// that a missing barrier or an order-dependent kernel computes a wrong answer; see
// parse_schedule() below).

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include "lockstep_emu/runtime.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace lockstep_emu {

uint3 g_thread_idx{0, 0, 0};
const KernelThread* g_running_thread = nullptr;
uint3 g_block_idx{0, 0, 0};
dim3 g_block_dim{1, 1, 1};
dim3 g_grid_dim{1, 1, 1};
bool g_yield_at_atomics = false;

namespace {

// ---- schedule ---------------------------------------------------------------------------------

enum class Order { Forward, Reverse, Shuffle };

struct Schedule {
  Order order = Order::Forward;
  uint64_t rng = 0;  // shuffle's state (splitmix64), from the seed
};

/// LOCKSTEP_EMU_SCHEDULE: the order of a grid's blocks and, between two meeting points, of a
/// block's threads. On a GPU neither is defined, so a kernel's result must not depend on it.
///  - shuffle[:SEED] (the default, seed 1): a new random order per launch and per scheduling
///    pass, and a switch right after an atomic operation with probability 1/2;
///  - reverse: by decreasing index, and a switch after every atomic operation (round robin), so
///    an atomic claim and the plain writes that follow it interleave with the other threads';
///  - forward: by increasing index, each thread running to its next barrier, shuffle, vote or
///    spin wait before the next one starts (the sequential answer: for debugging).
/// A block whose threads race (a missing __syncthreads: one thread reads what another writes in
/// the same phase) then computes another answer than the sequential one.
Schedule parse_schedule(const char* v) {
  Schedule s;
  if (v == nullptr || *v == '\0') v = "shuffle";
  if (std::strcmp(v, "forward") == 0) {
    s.order = Order::Forward;
  } else if (std::strcmp(v, "reverse") == 0) {
    s.order = Order::Reverse;
  } else if (std::strncmp(v, "shuffle", 7) == 0 && (v[7] == '\0' || v[7] == ':')) {
    s.order = Order::Shuffle;
    s.rng = 1;
    if (v[7] == ':') {
      char* end = nullptr;
      s.rng = std::strtoull(v + 8, &end, 10);
      if (end == v + 8 || *end != '\0')
        fatal("LOCKSTEP_EMU_SCHEDULE=%s: the seed after 'shuffle:' must be a decimal integer", v);
    }
  } else {
    fatal("LOCKSTEP_EMU_SCHEDULE=%s: expected forward, reverse, shuffle or shuffle:SEED", v);
  }
  return s;
}

Schedule g_schedule;
bool g_schedule_set = false;

Schedule& schedule() {
  if (!g_schedule_set) set_schedule(nullptr);
  return g_schedule;
}

uint64_t next_random(Schedule& s) {  // splitmix64
  uint64_t z = (s.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// order[0..n) = the visiting order of n threads or blocks for one pass.
void order_of(std::vector<unsigned>& order, unsigned n) {
  Schedule& s = schedule();
  order.resize(n);
  std::iota(order.begin(), order.end(), 0u);
  if (s.order == Order::Reverse) {
    std::reverse(order.begin(), order.end());
  } else if (s.order == Order::Shuffle) {
    for (unsigned i = n; i > 1; --i) std::swap(order[i - 1], order[next_random(s) % i]);
  }
}

constexpr size_t kStackBytes = size_t{128} << 10;
constexpr size_t kGuardBytes = 4096;

#if defined(__x86_64__)
// switch_stack(save, load): saves the callee-saved registers and the SSE/x87 control words on
// the current stack, stores the stack pointer in *save, and resumes the context saved at `load`.
extern "C" void lockstep_emu_switch(void** save, void* load);
asm(R"(
  .text
  .globl lockstep_emu_switch
  .type lockstep_emu_switch,@function
lockstep_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size lockstep_emu_switch,.-lockstep_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

enum class State { Ready, Spin, WaitBlock, WaitWarp, Done };

struct Fiber {
  char* stack = nullptr;  // the mapping: a guard page, then kStackBytes
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
  State state = State::Ready;
  void* asan_fake_stack = nullptr;  // AddressSanitizer's state of the fiber while switched out
  uint64_t wait_gen = 0;
  uint3 tid{0, 0, 0};
  unsigned linear = 0;  // the thread's index in its block
  KernelThread who;     // what the race check knows of it
};

struct Warp {
  uint64_t gen = 0;      // completed rendezvous rounds
  unsigned arrived = 0;  // lanes waiting in this round
  unsigned mask = 0;     // the mask of the round's first lane
  unsigned present = 0;  // lanes the block has in this warp
  unsigned exited = 0;   // lanes that have returned
  bool fence_round = false;  // the current round is a __syncwarp (orders memory; shuffles do not)
  uint64_t fence_gen = 0;    // completed __syncwarp rounds (the race check's warp phase)
  uint64_t slots[2][32] = {};
};

struct Block {
  uint64_t gen = 0;
  unsigned arrived = 0;
  unsigned live = 0;
  std::vector<Warp> warps;
  std::vector<const void*> fresh;  // __shared__ arrays filled with 0xff for this block
};

struct Scheduler {
  std::vector<Fiber> fibers;  // stacks kept between launches
  std::vector<unsigned> pass_order, block_order;
  Block block;
  Fiber* current = nullptr;
  void (*thread)(void*) = nullptr;
  void* arg = nullptr;
  const char* kernel = "";
#if defined(__x86_64__)
  void* main_sp = nullptr;
#else
  ucontext_t main_context;
#endif
  // AddressSanitizer's view of the scheduler's stack (fiber switches are announced to it).
  void* main_fake_stack = nullptr;
  const void* main_bottom = nullptr;
  size_t main_size = 0;
};

Scheduler g_sched;

[[noreturn]] void fiber_main();

#if !defined(__x86_64__)
void fiber_entry_ucontext() { fiber_main(); }
#endif

#if defined(__SANITIZE_ADDRESS__)
void asan_leave(void** fake_stack, const void* bottom, size_t size) {
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
}
void asan_arrive(void* fake_stack, const void** old_bottom, size_t* old_size) {
  __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
}
#else
void asan_leave(void**, const void*, size_t) {}
void asan_arrive(void*, const void**, size_t*) {}
#endif

void switch_to(Fiber& f) {
  g_sched.current = &f;
  g_running_thread = &f.who;
  g_thread_idx = f.tid;
  asan_leave(&g_sched.main_fake_stack, f.stack + kGuardBytes, kStackBytes);
#if defined(__x86_64__)
  lockstep_emu_switch(&g_sched.main_sp, f.sp);
#else
  swapcontext(&g_sched.main_context, &f.context);
#endif
  asan_arrive(g_sched.main_fake_stack, nullptr, nullptr);
  g_sched.current = nullptr;
  g_running_thread = nullptr;
}

// From the running fiber back to the scheduler.
// A finished fiber passes `last`: AddressSanitizer then drops its state.
void yield_to_scheduler(bool last = false) {
  Fiber& f = *g_sched.current;
  asan_leave(last ? nullptr : &f.asan_fake_stack, g_sched.main_bottom, g_sched.main_size);
#if defined(__x86_64__)
  lockstep_emu_switch(&f.sp, g_sched.main_sp);
#else
  swapcontext(&f.context, &g_sched.main_context);
#endif
  asan_arrive(f.asan_fake_stack, &g_sched.main_bottom, &g_sched.main_size);
}

void prepare(Fiber& f) {
  if (f.stack == nullptr) {
    void* m = mmap(nullptr, kGuardBytes + kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fatal("cannot map a %zu-byte stack for a kernel thread", kStackBytes);
    f.stack = static_cast<char*>(m);
    mprotect(f.stack, kGuardBytes, PROT_NONE);  // a thread overflowing its stack faults here
  }
  char* top = f.stack + kGuardBytes + kStackBytes;
#if defined(__x86_64__)
  auto* frame = reinterpret_cast<uint64_t*>(top - 72);  // see lockstep_emu_switch's pops
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  frame[0] = static_cast<uint64_t>(mxcsr) | static_cast<uint64_t>(fpucw) << 32;
  for (int i = 1; i <= 6; ++i) frame[i] = 0;  // r15 r14 r13 r12 rbx rbp
  frame[7] = reinterpret_cast<uint64_t>(&fiber_main);
  frame[8] = 0;  // fiber_main's return address: it never returns
  f.sp = frame;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack + kGuardBytes;
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, &fiber_entry_ucontext, 0);
#endif
  f.state = State::Ready;
}

Warp& warp_of(const Fiber& f) { return g_sched.block.warps[f.linear / 32]; }

void release_block_if_complete() {
  Block& b = g_sched.block;
  if (b.arrived > 0 && b.arrived == b.live) {
    b.arrived = 0;
    ++b.gen;
  }
}

void release_warp_if_complete(Warp& w) {
  if (w.arrived == 0) return;
  const unsigned expected = __builtin_popcount(w.mask & w.present);
  if (w.mask & w.present & w.exited)
    fatal(
        "kernel %s: a warp collective (shuffle, vote or __syncwarp) with mask 0x%08x waits "
        "for lanes that have exited (0x%08x): undefined behaviour on a GPU",
        g_sched.kernel, w.mask, w.mask & w.exited);
  if (w.arrived == expected) {
    w.arrived = 0;
    ++w.gen;
    if (w.fence_round) ++w.fence_gen;
  }
}

[[noreturn]] void fiber_main() {
  asan_arrive(nullptr, &g_sched.main_bottom, &g_sched.main_size);
  try {
    g_sched.thread(g_sched.arg);
  } catch (...) {
    fatal("kernel %s: a kernel thread threw a C++ exception", g_sched.kernel);
  }
  Fiber& f = *g_sched.current;
  f.state = State::Done;
  Block& b = g_sched.block;
  --b.live;
  release_block_if_complete();
  Warp& w = warp_of(f);
  w.exited |= 1u << (f.linear % 32);
  release_warp_if_complete(w);
  yield_to_scheduler(/*last=*/true);
  fatal("a finished kernel thread was resumed");
}

// Runs block `block` (its linear index in the grid; blockIdx is set).
void run_block(unsigned threads, uint64_t block) {
  Scheduler& s = g_sched;
  if (s.fibers.size() < threads) s.fibers.resize(threads);
  Block& b = s.block;
  b.gen = 0;
  b.arrived = 0;
  b.live = threads;
  b.warps.resize((threads + 31) / 32);
  b.fresh.clear();
  for (unsigned w = 0; w < b.warps.size(); ++w) {  // the exchange slots need no reset
    Warp& warp = b.warps[w];
    const unsigned lanes = std::min(32u, threads - 32 * w);
    warp.gen = 0;
    warp.arrived = 0;
    warp.mask = 0;
    warp.exited = 0;
    warp.fence_round = false;
    warp.fence_gen = 0;
    warp.present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  }
  race_block_begin();
  const dim3 dim = g_block_dim;
  for (unsigned i = 0; i < threads; ++i) {
    Fiber& f = s.fibers[i];
    prepare(f);
    f.linear = i;
    f.tid = uint3{i % dim.x, i / dim.x % dim.y, i / (dim.x * dim.y)};
    f.who = KernelThread{static_cast<uint32_t>(block),
                         static_cast<uint16_t>(i),
                         &b.gen,
                         &b.warps[i / 32].fence_gen,
                         f.stack,
                         f.stack + kGuardBytes + kStackBytes};
  }
  unsigned done = 0;
  uint64_t idle_passes = 0;  // passes in which only spinning threads ran
  const bool forward = schedule().order == Order::Forward;
  while (done < threads) {
    bool progressed = false, ran = false;
    if (!forward) order_of(s.pass_order, threads);
    for (unsigned k = 0; k < threads; ++k) {
      Fiber& f = s.fibers[forward ? k : s.pass_order[k]];
      if (f.state == State::Done) continue;
      if (f.state == State::WaitBlock && b.gen == f.wait_gen) continue;
      if (f.state == State::WaitWarp && warp_of(f).gen == f.wait_gen) continue;
      const bool spinning = f.state == State::Spin;
      f.state = State::Ready;
      switch_to(f);
      ran = true;
      if (!spinning || f.state != State::Spin) progressed = true;
      if (f.state == State::Done) ++done;
    }
    if (!ran)
      fatal(
          "kernel %s: block (%u,%u,%u) deadlocked: its threads wait at barriers that the others "
          "never reach (a __syncthreads or warp collective in divergent code)",
          s.kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z);
    idle_passes = progressed ? 0 : idle_passes + 1;
    if (idle_passes > 10000000)
      fatal("kernel %s: block (%u,%u,%u) spins forever (a __nanosleep wait is never satisfied)",
            s.kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z);
  }
}

}  // namespace

uintptr_t g_params_lo = 0, g_params_hi = 0;

void run_grid(const Grid& g, void (*thread)(void*), void* arg) {
  Scheduler& s = g_sched;
  if (s.current != nullptr) fatal("kernel %s launched from a kernel thread", g.kernel);
  s.thread = thread;
  s.arg = arg;
  s.kernel = g.kernel;
  g_grid_dim = g.grid;
  g_block_dim = g.block;
  const unsigned threads = g.block.x * g.block.y * g.block.z;
  const uint64_t blocks = uint64_t{g.grid.x} * g.grid.y * g.grid.z;
  const bool forward = schedule().order == Order::Forward;
  if (!forward) {
    if (blocks > 0xffffffffu) fatal("kernel %s: a grid of more than 2^32 blocks", g.kernel);
    order_of(s.block_order, static_cast<unsigned>(blocks));
  }
  g_params_lo = reinterpret_cast<uintptr_t>(g.params);
  g_params_hi = g_params_lo + g.params_bytes;
  race_launch_begin(g.kernel);
  profile_launch_begin(g.kernel, blocks, threads);
  for (uint64_t k = 0; k < blocks; ++k) {
    const uint64_t b = forward ? k : s.block_order[k];
    g_block_idx =
        uint3{static_cast<unsigned>(b % g.grid.x), static_cast<unsigned>(b / g.grid.x % g.grid.y),
              static_cast<unsigned>(b / (uint64_t{g.grid.x} * g.grid.y))};
    run_block(threads, b);
    profile_block_end();
  }
  profile_launch_end();
  race_launch_end();
}

void block_sync() {
  Fiber* f = g_sched.current;
  if (f == nullptr) fatal("__syncthreads outside a kernel");
  Block& b = g_sched.block;
  const uint64_t gen = b.gen;
  if (++b.arrived == b.live) {  // the last one to arrive releases the others and goes on
    b.arrived = 0;
    ++b.gen;
    return;
  }
  f->state = State::WaitBlock;
  f->wait_gen = gen;
  yield_to_scheduler();
}

void warp_sync(unsigned mask, bool fence) {
  Fiber* f = g_sched.current;
  if (f == nullptr) fatal("a warp collective outside a kernel");
  Warp& w = warp_of(*f);
  const unsigned lane = f->linear % 32;
  if (!(mask >> lane & 1u))
    fatal("kernel %s: lane %u calls a warp collective with mask 0x%08x, which leaves it out",
          g_sched.kernel, lane, mask);
  if (w.arrived == 0) {
    w.mask = mask;
    w.fence_round = fence;
  } else if (w.mask != mask) {
    fatal("kernel %s: lanes of one warp meet with different masks (0x%08x and 0x%08x)",
          g_sched.kernel, w.mask, mask);
  }
  const uint64_t gen = w.gen;
  ++w.arrived;
  release_warp_if_complete(w);
  if (w.gen != gen) return;
  f->state = State::WaitWarp;
  f->wait_gen = gen;
  yield_to_scheduler();
}

unsigned lane_id() {
  if (g_sched.current == nullptr) fatal("a lane id outside a kernel");
  return g_sched.current->linear % 32;
}

uint64_t* warp_slots() {
  if (g_sched.current == nullptr) fatal("a warp collective outside a kernel");
  Warp& w = warp_of(*g_sched.current);
  return w.slots[w.gen & 1];
}

unsigned active_lanes() {
  if (g_sched.current == nullptr) fatal("__activemask outside a kernel");
  const Warp& w = warp_of(*g_sched.current);
  return w.present & ~w.exited;
}

void fresh_shared(void* p, size_t bytes) {
  if (g_sched.current == nullptr) return;
  std::vector<const void*>& fresh = g_sched.block.fresh;
  if (std::find(fresh.begin(), fresh.end(), p) != fresh.end()) return;
  fresh.push_back(p);
  std::memset(p, 0xff, bytes);
  race_shared(p, bytes);
}

void set_schedule(const char* spec) {
  g_schedule = parse_schedule(spec != nullptr ? spec : std::getenv("LOCKSTEP_EMU_SCHEDULE"));
  g_yield_at_atomics = g_schedule.order != Order::Forward;
  g_schedule_set = true;
}

void atomic_point() {
  Fiber* f = g_sched.current;
  if (f == nullptr) return;
  Schedule& s = schedule();
  if (s.order == Order::Shuffle && (next_random(s) & 1u)) return;
  f->state = State::Ready;  // a step of progress, unlike a spin wait's pause
  yield_to_scheduler();
}

void spin_pause() {
  Fiber* f = g_sched.current;
  if (f == nullptr) return;
  f->state = State::Spin;
  yield_to_scheduler();
}

}  // namespace lockstep_emu

#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): what its headers (device.h, cub/, cublas)
// share with the runtime in emu/src. Internal to the emulation build.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cuda_runtime_api.h"

namespace lockstep_emu {

/// Work the "device" does, in stream order.
using Op = std::function<void()>;

/// Enqueues `op` on `stream`: it runs at the next synchronisation that reaches it (deferred, as
/// a GPU runs work after the call returned), or is recorded into the graph the stream captures.
/// `what` names it in diagnostics. Returns (and records as the thread's last error) an error
/// where the call is not allowed, e.g. on the legacy stream while this thread captures.
cudaError_t enqueue(cudaStream_t stream, const char* what, Op op);

/// Records `err` as the calling thread's last error (unless cudaSuccess) and returns it.
cudaError_t fail(cudaError_t err);

/// Stops the process with a message: what a GPU would report as an illegal address, or
/// undefined behaviour the emulator detected (compute-sanitizer's role).
[[noreturn]] void fatal(const char* format, ...) __attribute__((format(printf, 1, 2)));

/// Aborts (fatal) unless [p, p + bytes) lies within one live device allocation or pinned host
/// allocation: memory a kernel or a library call may touch. `what` names the access.
void require_device(const void* p, size_t bytes, const char* what);

/// Aborts (fatal) unless p is null or points into (or just past) a live device or pinned host
/// allocation, aligned to `align` bytes (its pointee type's): a kernel's pointer argument.
/// `kernel` and `index` name it.
void require_kernel_pointer(const void* p, size_t align, const char* kernel, int index);

/// (Re)installs the handler that names host accesses to device memory, in front of the
/// SIGSEGV handler installed now (which keeps every other fault). Done at the first device
/// allocation; a test harness that replaces handlers calls it again.
void install_fault_handler();

/// A kernel launch's configuration.
struct Grid {
  dim3 grid, block;
  size_t shared_bytes;
  const char* kernel;
  const void* params = nullptr;  // the launch's copy of its arguments
  size_t params_bytes = 0;
};

/// cudaErrorInvalidConfiguration for a configuration a GPU refuses (and the last error set).
cudaError_t check_grid(const Grid& g);

/// Runs the grid: every thread of every block calls thread(arg) with threadIdx & co. set. The
/// threads of a block run as fibers on the calling thread, switching only at barriers,
/// shuffles and spin waits, so that __syncthreads and warp shuffles behave as on a GPU.
void run_grid(const Grid& g, void (*thread)(void*), void* arg);

/// The running launch's copy of its arguments (a GPU's constant memory): [lo, hi).
extern uintptr_t g_params_lo, g_params_hi;

// The running thread's coordinates (valid inside run_grid's threads).
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

/// __syncthreads(): waits for every thread of the block that has not exited.
void block_sync();

/// The rendezvous of the lanes in `mask` of the calling thread's warp (__syncwarp and the
/// shuffles). A lane in `mask` that has exited is undefined behaviour on a GPU: fatal here.
/// `fence`: a __syncwarp, which also orders the lanes' memory accesses (the race check's warp
/// phase); a shuffle or vote does not.
void warp_sync(unsigned mask, bool fence = false);

/// The calling lane (0..31) and its warp's exchange buffer for the current rendezvous round.
unsigned lane_id();
uint64_t* warp_slots();

/// Whether expf & co. in kernels return results moved within CUDA's ulp bounds (see device.h);
/// on unless LOCKSTEP_EMU_ULPS=0 at start-up.
void set_device_ulps(bool on);

/// The order of blocks and threads: "forward", "reverse", "shuffle" or "shuffle:SEED" (see
/// emu/src/fiber.cpp); nullptr reads LOCKSTEP_EMU_SCHEDULE (shuffle where unset), as the first
/// launch does. A spec that is none of these is fatal.
void set_schedule(const char* spec);

/// Set where the schedule is not forward: atomic operations then call atomic_point()
/// after their update, which may switch to another thread of the block (see emu/src/fiber.cpp).
extern bool g_yield_at_atomics;
void atomic_point();

/// A `__shared__` array's declaration (emu/translate_cu.py adds the call): the first thread of
/// a block to reach it fills the array with 0xff bytes, as undefined as a GPU's shared memory.
void fresh_shared(void* p, size_t bytes);

// ---- the race check (emu/src/racecheck.cpp, LOCKSTEP_EMU_RACECHECK) ----------------------------

/// The running kernel thread, as the race check orders its accesses: two accesses of one launch
/// are ordered when one thread made both, or threads of one block made them in different
/// phases (a __syncthreads between them), or lanes of one warp in different warp phases (a
/// __syncwarp between them). Threads of different blocks are never ordered within a launch.
struct KernelThread {
  uint32_t block = 0;                     // the block's linear index in the grid
  uint16_t thread = 0;                    // the thread's linear index in its block (warp: / 32)
  const uint64_t* block_phase = nullptr;  // __syncthreads the block has passed
  const uint64_t* warp_phase = nullptr;   // __syncwarp rounds the thread's warp has completed
  const char* stack_begin = nullptr;      // the thread's stack: private, not checked
  const char* stack_end = nullptr;
};

/// The kernel thread running now; null outside kernel threads.
extern const KernelThread* g_running_thread;

// The scheduler's events (emu/src/fiber.cpp): a launch, a block, a `__shared__` array a block
// reached (its accesses are the block's own: forgotten when the next block starts).
void race_launch_begin(const char* kernel);
void race_launch_end();
void race_block_begin();
void race_shared(const void* p, size_t bytes);

/// An atomic operation's access (device.h's atomics, which are not instrumented themselves).
void race_atomic(const void* p, size_t bytes, const void* pc);

/// "off", "fatal" (the first race stops the process) or "report" (each distinct race is printed
/// once and counted; the process goes on); nullptr reads LOCKSTEP_EMU_RACECHECK (fatal where the
/// emulator has the race check, off otherwise). Only instrumented code is checked: lockstep's
/// kernels in a LOCKSTEP_EMU_RACECHECK build, the emulator's tests. Returns the previous mode.
const char* set_racecheck(const char* mode);

/// Distinct races reported since the last call (report mode), and forgets them.
size_t take_race_reports();

/// "file:line" of a place in instrumented kernel code (addr2line; the first frame of its
/// inlining chain outside the emulator's headers), or "module+offset".
std::string code_place(const void* pc);

// ---- the memory-access profile (emu/src/profile.cpp) -------------------------------------------

/// Set while the profile collects (LOCKSTEP_EMU_PROFILE=FILE at start-up, or set_profile):
/// instrumented kernels' accesses, grouped into warp instructions, and library calls' bytes.
extern bool g_profiling;

/// One place in a kernel's code that accesses memory, over the launches profiled: `units` are
/// the 32-byte sectors (global memory) or the wavefronts (shared memory) its warp instructions
/// cost, `ideal_units` the fewest their bytes would need; `serial` sums, per atomic
/// instruction, the most lanes that update one address.
struct ProfileLine {
  const char* kernel = "";
  const void* pc = nullptr;
  char kind = 'r';  // 'r' load, 'w' store, 'a' atomic read-modify-write
  bool shared = false;
  uint64_t requests = 0, lanes = 0, units = 0, ideal_units = 0, used_bytes = 0, serial = 0;
};

/// Starts (true) or stops collecting. LOCKSTEP_EMU_PROFILE=FILE starts it at the first launch
/// and writes FILE ("%p": the process id) at exit, for emu/profile_report.py.
void set_profile(bool on);
/// cudaProfilerStart (true) and cudaProfilerStop: where LOCKSTEP_EMU_PROFILE is set, the
/// profile keeps the first range from a start to a stop only (as nsys's capture range does).
void profile_range(bool start);
/// The places collected so far; forgets them and the launches and library calls.
std::vector<ProfileLine> take_profile_lines();

// The scheduler's and libraries' events.
void profile_launch_begin(const char* kernel, uint64_t blocks, unsigned threads);
void profile_block_end();
void profile_launch_end();
void profile_access(const KernelThread& t, uintptr_t addr, size_t bytes, char kind, const void* pc,
                    bool shared);
/// A library call (cuBLAS, CUB, a copy) as it runs: its bytes and FLOPs; transfer 'd' on the
/// device, 'h' host to device, 'D' device to host.
void profile_op(const char* what, double bytes, double flops, char transfer);

/// A spin wait's pause (__nanosleep): lets the block's other threads run.
void spin_pause();

/// Lanes of the calling thread's warp that have not exited (__activemask).
unsigned active_lanes();

}  // namespace lockstep_emu

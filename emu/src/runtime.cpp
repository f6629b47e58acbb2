// lockstep's CUDA emulator (docs/cuda_emulation.md): the CUDA runtime API on the host.
//
// One emulated device. Its memory is an arena of address space that is inaccessible while host
// code runs and opened only while the "device" works, so host code that touches device memory
// faults at once (with a message naming the emulator) instead of working by accident. New and
// freed device memory is filled with 0xff bytes (NaN floats, -1 integers), so a kernel that reads
// memory nobody wrote computes garbage here as it may on a GPU.
//
// Work is asynchronous as on a GPU: kernels, copies, memsets, event records and library calls
// go into one queue in issue order (a valid order for every stream and event dependency) and run
// only at a synchronisation (cudaStreamSynchronize, cudaEventSynchronize, a query that finds
// work pending, a copy to pageable memory, ...). A host that reads a pinned buffer before
// synchronising with the copy into it reads stale data here too. Stream capture records the
// work into a graph instead, and refuses what CUDA refuses while a capture is active.

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_profiler_api.h"
#include "lockstep_emu/runtime.h"

struct CUstream_st {
  unsigned flags = 0;
  bool legacy = false;
  uint64_t last_seq = 0;  // the last work enqueued on it (0: none)
  struct Capture* capture = nullptr;
};

struct CUevent_st {
  struct State {
    unsigned flags = 0;
    uint64_t record_seq = 0;  // the latest record's queue position (0: never recorded)
    double time_ms = 0;       // when that record ran
    uint64_t capture_id = 0;  // recorded into this capture (a graph node) while it is active
  };
  std::shared_ptr<State> state = std::make_shared<State>();
};

struct CUgraph_st {
  std::vector<lockstep_emu::Op> ops;
};
struct CUgraphExec_st {
  std::vector<lockstep_emu::Op> ops;
};
struct CUmemPoolHandle_st {
  uint64_t release_threshold = 0;
};

struct Capture {
  uint64_t id = 0;
  std::thread::id thread;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  CUstream_st* origin = nullptr;
  std::set<CUstream_st*> members;
  std::unique_ptr<CUgraph_st> graph = std::make_unique<CUgraph_st>();
  bool invalidated = false;
};

namespace lockstep_emu {
namespace {

std::recursive_mutex g_mu;
using Lock = std::lock_guard<std::recursive_mutex>;
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local Capture* t_capture = nullptr;  // a capture this thread began (global/thread-local)
int t_device = 0;

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strcmp(v, "0") != 0;
}

}  // namespace

bool g_device_ulps = env_flag("LOCKSTEP_EMU_ULPS", true);

void set_device_ulps(bool on) { g_device_ulps = on; }

namespace {

// ---- memory -------------------------------------------------------------------------------

constexpr size_t kArenaBytes = size_t{64} << 30;  // address space, reserved not committed
// Under AddressSanitizer (LOCKSTEP_SANITIZE=address) device allocations come from its allocator
// instead of the arena: a kernel reading past an allocation's end, or freed memory, is then
// reported by ASan (compute-sanitizer memcheck's role); host accesses are no longer caught.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
constexpr size_t kAlign = 256;
constexpr unsigned char kPoison = 0xff;

struct Allocation {
  size_t bytes;  // as requested: the bounds of every check
  size_t block;  // as reserved (a multiple of kAlign for device memory)
  bool pinned;
};

struct Memory {
  char* base = nullptr;
  size_t committed = 0;  // bytes of the arena in use (page multiple): [base, base + committed)
  size_t live_bytes = 0;
  size_t high_water = 0;  // the most live bytes so far: what a pool that keeps memory holds
  std::map<uintptr_t, Allocation> live;             // device and pinned allocations by start
  std::multimap<size_t, uintptr_t> free_blocks;     // freed device blocks by size
  std::vector<std::pair<void*, size_t>> to_poison;  // fresh allocations, filled on device entry
  int device_depth = 0;
  bool protect = true;
} g_mem;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

bool in_arena(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(g_mem.base);
  return g_mem.base != nullptr && a >= b && a < b + kArenaBytes;
}

struct sigaction g_previous_fault_action {};

void on_fault(int sig, siginfo_t* info, void*) {
  const void* addr = info->si_addr;
  if (in_arena(addr)) {
    char msg[256];
    const int n = std::snprintf(msg, sizeof msg,
                                "lockstep CUDA emulator: host code accessed device memory at %p "
                                "(a real GPU's memory is not host-addressable either)\n",
                                addr);
    (void)!write(2, msg, static_cast<size_t>(n));
    std::abort();
  }
  sigaction(sig, &g_previous_fault_action, nullptr);  // not ours: fault again, handled as before
}

void init_memory() {
  if (g_mem.base != nullptr || kAsan) return;
  void* m =
      mmap(nullptr, kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED)
    fatal("cannot reserve %zu bytes of address space for device memory", kArenaBytes);
  g_mem.base = static_cast<char*>(m);
  g_mem.protect = env_flag("LOCKSTEP_EMU_PROTECT", true);
  if (!g_mem.protect) mprotect(g_mem.base, kArenaBytes, PROT_READ | PROT_WRITE);
  install_fault_handler();
}

// Device memory is accessible between enter_device() and exit_device() (nested).
void enter_device() {
  if (g_mem.device_depth++ > 0) return;
  if (g_mem.protect && g_mem.committed > 0)
    mprotect(g_mem.base, g_mem.committed, PROT_READ | PROT_WRITE);
  for (const auto& [p, n] : g_mem.to_poison) std::memset(p, kPoison, n);
  g_mem.to_poison.clear();
}
void exit_device() {
  if (--g_mem.device_depth > 0) return;
  if (g_mem.protect && g_mem.committed > 0) mprotect(g_mem.base, g_mem.committed, PROT_NONE);
}
struct DeviceAccess {
  DeviceAccess() { enter_device(); }
  ~DeviceAccess() { exit_device(); }
};

// The live allocation holding [p, p + bytes), or null; with `end_ok`, p may also be its end
// (a pointer just past an allocation, which a kernel may receive and not dereference).
const std::pair<const uintptr_t, Allocation>* find_allocation(const void* p, size_t bytes,
                                                              bool end_ok = false) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_mem.live.upper_bound(a);
  if (it == g_mem.live.begin()) return nullptr;
  --it;
  const uintptr_t end = it->first + it->second.bytes;
  if (a + bytes > end || (a == end && !end_ok)) return nullptr;
  return &*it;
}

void* device_alloc(size_t bytes) {
  init_memory();
  if (kAsan) {
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, bytes) != 0) return nullptr;
    std::memset(p, kPoison, bytes);
    g_mem.live[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, bytes, false};
    g_mem.live_bytes += bytes;
    g_mem.high_water = std::max(g_mem.high_water, g_mem.live_bytes);
    return p;
  }
  const size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
  uintptr_t at = 0;
  auto fit = g_mem.free_blocks.lower_bound(size);
  if (fit != g_mem.free_blocks.end() && fit->first <= 2 * size) {
    at = fit->second;
    const size_t block = fit->first;
    g_mem.free_blocks.erase(fit);
    if (block > size) g_mem.free_blocks.emplace(block - size, at + size);
  } else {
    static size_t bump = 0;
    if (bump + size > kArenaBytes) return nullptr;
    at = reinterpret_cast<uintptr_t>(g_mem.base) + bump;
    bump += size;
    const size_t need = (bump + kPage - 1) / kPage * kPage;
    if (need > g_mem.committed) {
      if (!g_mem.protect || g_mem.device_depth > 0)
        mprotect(g_mem.base + g_mem.committed, need - g_mem.committed, PROT_READ | PROT_WRITE);
      g_mem.committed = need;
    }
  }
  g_mem.live[at] = Allocation{bytes, size, false};
  g_mem.live_bytes += size;
  if (g_mem.device_depth > 0)
    std::memset(reinterpret_cast<void*>(at), kPoison, size);
  else
    g_mem.to_poison.emplace_back(reinterpret_cast<void*>(at), size);
  return reinterpret_cast<void*>(at);
}

// Frees a device allocation; runs with device memory accessible (in stream order).
void device_free(void* p, const char* what) {
  auto it = g_mem.live.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_mem.live.end() || it->second.pinned)
    fatal("%s(%p): not the start of a live device allocation (freed twice?)", what, p);
  const size_t size = it->second.block;
  g_mem.live.erase(it);
  g_mem.live_bytes -= size;
  for (auto& [q, n] : g_mem.to_poison)
    if (q == p) n = 0;
  std::memset(p, kPoison, size);  // a later read through a stale pointer sees garbage
  if (kAsan) {
    std::free(p);  // ASan reports a later use
    return;
  }
  g_mem.free_blocks.emplace(size, reinterpret_cast<uintptr_t>(p));
}

enum class Space { Device, Pinned, Pageable };

Space space_of(const void* p) {
  if (in_arena(p)) return Space::Device;
  const auto* a = find_allocation(p, 1);
  if (a != nullptr) return a->second.pinned ? Space::Pinned : Space::Device;
  return Space::Pageable;
}

// ---- streams, the queue, capture ------------------------------------------------------------

struct Item {
  uint64_t seq;
  const char* what;
  Op op;
};

std::deque<Item> g_queue;
uint64_t g_next_seq = 1;
uint64_t g_executed_seq = 0;
bool g_sync_each = false;  // LOCKSTEP_EMU_SYNC=1: every operation runs when enqueued
bool g_flushing = false;
const char* g_running_op = nullptr;  // the queued operation running now (named by fatal())
CUstream_st g_legacy_stream{0, true, 0, nullptr};
CUmemPoolHandle_st g_pool;
std::map<uint64_t, Capture*> g_captures;  // the active captures by id
uint64_t g_next_capture_id = 1;

// The active capture an event was recorded into, or null.
Capture* capture_of(const CUevent_st* e) {
  const auto it = g_captures.find(e->state->capture_id);
  return it == g_captures.end() ? nullptr : it->second;
}
const auto g_start = std::chrono::steady_clock::now();

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - g_start)
      .count();
}

CUstream_st* resolve(cudaStream_t s) { return s == nullptr ? &g_legacy_stream : s; }

// Runs every queued operation, in issue order, with device memory accessible.
void flush() {
  if (g_flushing) return;  // an operation synchronising inside the queue: it is running already
  g_flushing = true;
  DeviceAccess access;
  while (!g_queue.empty()) {
    Item item = std::move(g_queue.front());
    g_queue.pop_front();
    g_running_op = item.what;
    item.op();
    g_executed_seq = item.seq;
  }
  g_running_op = nullptr;
  g_flushing = false;
}

bool pending(uint64_t seq) { return seq > g_executed_seq; }

// The capture an API call on this thread runs into: an unsafe call (a synchronisation, a
// synchronous allocation) while this thread captures in global or thread-local mode
// invalidates that capture and fails, as CUDA's does.
cudaError_t refuse_during_capture() {
  if (t_capture == nullptr) return cudaSuccess;
  t_capture->invalidated = true;
  return fail(cudaErrorStreamCaptureUnsupported);
}

// ---- device description --------------------------------------------------------------------

int device_count() {
  const char* v = std::getenv("LOCKSTEP_EMU_DEVICES");
  if (v == nullptr || *v == '\0') return 1;
  return std::atoi(v);
}

cudaError_t check_device(int device) {
  if (device_count() == 0) return fail(cudaErrorNoDevice);
  if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice);
  return cudaSuccess;
}

}  // namespace

// ---- shared with the headers ---------------------------------------------------------------

void install_fault_handler() {
  struct sigaction sa {};
  sa.sa_sigaction = &on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous_fault_action);
}

cudaError_t fail(cudaError_t err) {
  if (err != cudaSuccess) t_last_error = err;
  return err;
}

void fatal(const char* format, ...) {
  std::fflush(stdout);
  std::fputs("lockstep CUDA emulator: ", stderr);
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  if (g_running_op != nullptr) std::fprintf(stderr, " (while the device ran %s)", g_running_op);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

cudaError_t enqueue(cudaStream_t stream, const char* what, Op op) {
  Lock lock(g_mu);
  CUstream_st* s = resolve(stream);
  if (s->capture != nullptr) {
    if (s->capture->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    s->capture->graph->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  if (s->legacy && t_capture != nullptr && t_capture->mode != cudaStreamCaptureModeRelaxed) {
    t_capture->invalidated = true;  // the legacy stream would synchronise with the capture
    return fail(cudaErrorStreamCaptureImplicit);
  }
  const uint64_t seq = g_next_seq++;
  g_queue.push_back(Item{seq, what, std::move(op)});
  s->last_seq = seq;
  if (g_sync_each) flush();
  return cudaSuccess;
}

void require_device(const void* p, size_t bytes, const char* what) {
  Lock lock(g_mu);
  if (bytes == 0) return;
  if (p == nullptr) fatal("%s: a null pointer for %zu bytes", what, bytes);
  if (find_allocation(p, bytes) == nullptr)
    fatal("%s: [%p, +%zu bytes) is not inside one live device or pinned allocation (%s)", what, p,
          bytes, in_arena(p) ? "out of bounds, or freed" : "host memory");
}

void require_kernel_pointer(const void* p, size_t align, const char* kernel, int index) {
  if (p == nullptr) return;
  Lock lock(g_mu);
  if (find_allocation(p, 0, /*end_ok=*/true) == nullptr)
    fatal("kernel %s: argument %d (%p) points to %s", kernel, index, p,
          in_arena(p) ? "freed or unallocated device memory" : "host memory, not device memory");
  if (reinterpret_cast<uintptr_t>(p) % align != 0)
    fatal(
        "kernel %s: argument %d (%p) is not aligned to the %zu bytes of the type it points "
        "to: a GPU's access through it fails with cudaErrorMisalignedAddress",
        kernel, index, p, align);
}

cudaError_t check_grid(const Grid& g) {
  const auto threads = uint64_t{g.block.x} * g.block.y * g.block.z;
  const bool ok = g.grid.x >= 1 && g.grid.y >= 1 && g.grid.z >= 1 && g.grid.x <= 2147483647u &&
                  g.grid.y <= 65535 && g.grid.z <= 65535 && threads >= 1 && threads <= 1024 &&
                  g.block.z <= 64 && g.shared_bytes <= 48 * 1024;
  if (ok) return cudaSuccess;
  std::fprintf(stderr,
               "lockstep CUDA emulator: kernel %s launched with grid (%u,%u,%u), block "
               "(%u,%u,%u), %zu shared bytes: cudaErrorInvalidConfiguration\n",
               g.kernel, g.grid.x, g.grid.y, g.grid.z, g.block.x, g.block.y, g.block.z,
               g.shared_bytes);
  return fail(cudaErrorInvalidConfiguration);
}

}  // namespace lockstep_emu

using namespace lockstep_emu;

// ---- errors ---------------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define LOCKSTEP_EMU_NAME(x) \
  case x:                    \
    return #x;
    LOCKSTEP_EMU_NAME(cudaSuccess)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidValue)
    LOCKSTEP_EMU_NAME(cudaErrorMemoryAllocation)
    LOCKSTEP_EMU_NAME(cudaErrorInitializationError)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidConfiguration)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidDevice)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidResourceHandle)
    LOCKSTEP_EMU_NAME(cudaErrorNotReady)
    LOCKSTEP_EMU_NAME(cudaErrorIllegalAddress)
    LOCKSTEP_EMU_NAME(cudaErrorLaunchTimeout)
    LOCKSTEP_EMU_NAME(cudaErrorLaunchFailure)
    LOCKSTEP_EMU_NAME(cudaErrorHardwareStackError)
    LOCKSTEP_EMU_NAME(cudaErrorIllegalInstruction)
    LOCKSTEP_EMU_NAME(cudaErrorMisalignedAddress)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidAddressSpace)
    LOCKSTEP_EMU_NAME(cudaErrorInvalidPc)
    LOCKSTEP_EMU_NAME(cudaErrorAssert)
    LOCKSTEP_EMU_NAME(cudaErrorECCUncorrectable)
    LOCKSTEP_EMU_NAME(cudaErrorNvlinkUncorrectable)
    LOCKSTEP_EMU_NAME(cudaErrorContextIsDestroyed)
    LOCKSTEP_EMU_NAME(cudaErrorNoDevice)
    LOCKSTEP_EMU_NAME(cudaErrorInsufficientDriver)
    LOCKSTEP_EMU_NAME(cudaErrorNotSupported)
    LOCKSTEP_EMU_NAME(cudaErrorStreamCaptureUnsupported)
    LOCKSTEP_EMU_NAME(cudaErrorStreamCaptureInvalidated)
    LOCKSTEP_EMU_NAME(cudaErrorStreamCaptureUnjoined)
    LOCKSTEP_EMU_NAME(cudaErrorStreamCaptureImplicit)
    LOCKSTEP_EMU_NAME(cudaErrorStreamCaptureWrongThread)
    LOCKSTEP_EMU_NAME(cudaErrorUnknown)
#undef LOCKSTEP_EMU_NAME
  }
  return "cudaErrorUnrecognized";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnjoined:
      return "capture was not joined back to the origin stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    default:
      return cudaGetErrorName(e);
  }
}

// ---- device --------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  *count = device_count();
  if (*count == 0) return fail(cudaErrorNoDevice);
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (const cudaError_t e = check_device(device)) return e;
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (const cudaError_t e = check_device(device)) return e;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "lockstep CUDA emulator (host)");
  prop->totalGlobalMem = size_t{16} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 4;
  prop->pciBusID = device;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (const cudaError_t e = check_device(device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      break;
    case cudaDevAttrClockRate:
      *value = 1000000;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = 4;
      break;
    case cudaDevAttrMemoryClockRate:
      *value = 1000000;
      break;
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = 256;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    default:
      return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceGetPCIBusId(char* id, int len, int device) {
  if (const cudaError_t e = check_device(device)) return e;
  // Per device index, as on a machine: two ranks on device 0 share "one GPU" (and the nccl
  // communicator refuses them); with LOCKSTEP_EMU_DEVICES=N ranks take devices of their own.
  std::snprintf(id, static_cast<size_t>(len), "0000:%02x:00.0", device);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  Lock lock(g_mu);
  if (const cudaError_t e = refuse_during_capture()) return e;
  flush();
  return cudaSuccess;
}
cudaError_t cudaProfilerStart() {
  if (const cudaError_t e = cudaDeviceSynchronize()) return e;
  lockstep_emu::profile_range(true);
  return cudaSuccess;
}
cudaError_t cudaProfilerStop() {
  if (const cudaError_t e = cudaDeviceSynchronize()) return e;
  lockstep_emu::profile_range(false);
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

// ---- memory --------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  Lock lock(g_mu);
  *ptr = nullptr;
  if (const cudaError_t e = refuse_during_capture()) return e;
  if (bytes == 0) return cudaSuccess;
  *ptr = device_alloc(bytes);
  return *ptr ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* ptr) {
  Lock lock(g_mu);
  if (const cudaError_t e = refuse_during_capture()) return e;
  if (ptr == nullptr) return cudaSuccess;
  flush();  // cudaFree synchronises
  DeviceAccess access;
  device_free(ptr, "cudaFree");
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) {
  Lock lock(g_mu);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  *ptr = device_alloc(bytes);
  return *ptr ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
  if (ptr == nullptr) return cudaSuccess;
  Lock lock(g_mu);
  if (g_mem.live.count(reinterpret_cast<uintptr_t>(ptr)) == 0)
    fatal("cudaFreeAsync(%p): not the start of a live device allocation (freed twice?)", ptr);
  return enqueue(stream, "cudaFreeAsync", [ptr] { device_free(ptr, "cudaFreeAsync"); });
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  Lock lock(g_mu);
  *ptr = nullptr;
  if (const cudaError_t e = refuse_during_capture()) return e;
  init_memory();
  void* p = std::aligned_alloc(4096, (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096);
  if (p == nullptr) return fail(cudaErrorMemoryAllocation);
  std::memset(p, kPoison, bytes);
  const size_t size = std::max<size_t>(bytes, 1);
  g_mem.live[reinterpret_cast<uintptr_t>(p)] = Allocation{size, size, true};
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* ptr) {
  Lock lock(g_mu);
  if (const cudaError_t e = refuse_during_capture()) return e;
  if (ptr == nullptr) return cudaSuccess;
  auto it = g_mem.live.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_mem.live.end() || !it->second.pinned) return fail(cudaErrorInvalidValue);
  flush();  // work still reading or writing it completes first
  g_mem.live.erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (const cudaError_t e = check_device(device)) return e;
  *pool = &g_pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (attr != cudaMemPoolAttrReleaseThreshold) return fail(cudaErrorInvalidValue);
  pool->release_threshold = *static_cast<uint64_t*>(value);
  return cudaSuccess;
}
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  Lock lock(g_mu);
  auto* out = static_cast<uint64_t*>(value);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold:
      *out = pool->release_threshold;
      break;
    case cudaMemPoolAttrReservedMemCurrent:
    case cudaMemPoolAttrReservedMemHigh:  // the arena's, or under ASan the most ever live
      *out = kAsan ? g_mem.high_water : g_mem.committed;
      break;
    case cudaMemPoolAttrUsedMemCurrent:
    case cudaMemPoolAttrUsedMemHigh:
      *out = g_mem.live_bytes;
      break;
    default:
      return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

namespace {

// The checks of a copy's two sides: device (or pinned) ranges must be inside an allocation, an
// explicit direction must match where the pointers are.
cudaError_t check_copy(void* dst, size_t dst_bytes, const void* src, size_t src_bytes,
                       cudaMemcpyKind kind, Space d, Space s) {
  const bool d_dev = d == Space::Device, s_dev = s == Space::Device;
  switch (kind) {
    case cudaMemcpyHostToHost:
      if (d_dev || s_dev) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyHostToDevice:
      if (!d_dev || s_dev) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyDeviceToHost:
      if (d_dev || !s_dev) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyDeviceToDevice:
      if (!d_dev || !s_dev) return fail(cudaErrorInvalidValue);
      break;
    case cudaMemcpyDefault:
      break;
    default:
      return fail(cudaErrorInvalidValue);
  }
  if (d != Space::Pageable) require_device(dst, dst_bytes, "cudaMemcpy destination");
  if (s != Space::Pageable) require_device(src, src_bytes, "cudaMemcpy source");
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  Lock lock(g_mu);
  if (bytes == 0) return cudaSuccess;
  const Space d = space_of(dst), s = space_of(src);
  if (const cudaError_t e = check_copy(dst, bytes, src, bytes, kind, d, s)) return e;
  CUstream_st* st = resolve(stream);
  const bool capturing = st->capture != nullptr;
  if (d == Space::Pageable || s == Space::Pageable) {
    // Pageable memory is staged by the driver: not capturable.
    if (capturing) {
      st->capture->invalidated = true;
      return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (d == Space::Pageable) {  // returns once the data is there: the stream's work first
      if (s == Space::Pageable) {
        std::memmove(dst, src, bytes);
        return cudaSuccess;
      }
      flush();
      DeviceAccess access;
      std::memcpy(dst, src, bytes);
      return cudaSuccess;
    }
    // From pageable memory: the data is taken now (staged), written in stream order.
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    return enqueue(stream, "cudaMemcpyAsync", [dst, staged] {
      if (g_profiling) profile_op("cudaMemcpyAsync (pageable)", double(staged->size()), 0, 'h');
      std::memcpy(dst, staged->data(), staged->size());
    });
  }
  const char transfer = s == Space::Pinned ? 'h' : d == Space::Pinned ? 'D' : 'd';
  return enqueue(stream, "cudaMemcpyAsync", [dst, src, bytes, transfer] {
    if (g_profiling)
      profile_op("cudaMemcpyAsync", transfer == 'd' ? 2.0 * bytes : double(bytes), 0, transfer);
    std::memmove(dst, src, bytes);
  });
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  Lock lock(g_mu);
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue);
  const size_t d_extent = dpitch * (height - 1) + width, s_extent = spitch * (height - 1) + width;
  const Space d = space_of(dst), s = space_of(src);
  if (d == Space::Pageable || s == Space::Pageable)  // lockstep copies device rows only
    return fail(cudaErrorNotSupported);
  if (const cudaError_t e = check_copy(dst, d_extent, src, s_extent, kind, d, s)) return e;
  return enqueue(stream, "cudaMemcpy2DAsync", [=] {
    if (g_profiling) profile_op("cudaMemcpy2DAsync", 2.0 * width * height, 0, 'd');
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                   width);
  });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  Lock lock(g_mu);
  if (const cudaError_t e = refuse_during_capture()) return e;
  if (bytes == 0) return cudaSuccess;
  const Space d = space_of(dst), s = space_of(src);
  if (const cudaError_t e = check_copy(dst, bytes, src, bytes, kind, d, s)) return e;
  flush();
  DeviceAccess access;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  Lock lock(g_mu);
  if (bytes == 0) return cudaSuccess;
  if (space_of(dst) == Space::Pageable) return fail(cudaErrorInvalidValue);
  require_device(dst, bytes, "cudaMemsetAsync");
  return enqueue(stream, "cudaMemsetAsync", [dst, value, bytes] {
    if (g_profiling) profile_op("cudaMemsetAsync", double(bytes), 0, 'd');
    std::memset(dst, value, bytes);
  });
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  Lock lock(g_mu);
  if (const cudaError_t e = refuse_during_capture()) return e;
  if (const cudaError_t e = cudaMemsetAsync(dst, value, bytes, nullptr)) return e;
  flush();
  return cudaSuccess;
}

// ---- streams and events ----------------------------------------------------------------------

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = new CUstream_st{flags, false, 0, nullptr};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Lock lock(g_mu);
  if (stream == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (stream->capture != nullptr) return fail(cudaErrorStreamCaptureUnsupported);
  delete stream;  // queued work does not refer to its stream
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  Lock lock(g_mu);
  CUstream_st* s = resolve(stream);
  if (s->capture != nullptr) {
    s->capture->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  if (s->legacy) {
    if (const cudaError_t e = refuse_during_capture()) return e;
  }
  flush();
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  Lock lock(g_mu);
  CUstream_st* s = resolve(stream);
  if (s->capture != nullptr) {
    s->capture->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  if (!pending(s->last_seq)) return cudaSuccess;
  flush();  // "not ready" now; the device goes on meanwhile
  return fail(cudaErrorNotReady);
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  Lock lock(g_mu);
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st* s = resolve(stream);
  Capture* c = capture_of(event);
  if (c != nullptr && s->capture == nullptr) {  // waiting on captured work joins the capture
    if (c->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    if (s->legacy) return fail(cudaErrorStreamCaptureImplicit);
    s->capture = c;
    c->members.insert(s);
  }
  // Otherwise nothing to do: the queue runs in issue order, after the event's record.
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  *event = new CUevent_st;
  (*event)->state->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  Lock lock(g_mu);
  delete event;  // a pending record keeps the state alive
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  Lock lock(g_mu);
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  CUstream_st* s = resolve(stream);
  auto state = event->state;
  if (s->capture != nullptr) {
    state->capture_id = s->capture->id;
    return enqueue(stream, "cudaEventRecord", [] {});
  }
  state->capture_id = 0;
  const uint64_t seq = g_next_seq;  // the position enqueue gives the record
  if (const cudaError_t e = enqueue(stream, "cudaEventRecord", [state, seq] {
        if (state->record_seq == seq) state->time_ms = now_ms();
      }))
    return e;
  state->record_seq = seq;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  Lock lock(g_mu);
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (capture_of(event) != nullptr) return fail(cudaErrorStreamCaptureUnsupported);
  if (!pending(event->state->record_seq)) return cudaSuccess;
  flush();  // "not ready" now; the device goes on meanwhile
  return fail(cudaErrorNotReady);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  Lock lock(g_mu);
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if (capture_of(event) != nullptr) return fail(cudaErrorStreamCaptureUnsupported);
  if (pending(event->state->record_seq)) flush();
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  Lock lock(g_mu);
  if (start == nullptr || end == nullptr) return fail(cudaErrorInvalidResourceHandle);
  if ((start->state->flags | end->state->flags) & cudaEventDisableTiming)
    return fail(cudaErrorInvalidResourceHandle);
  if (start->state->record_seq == 0 || end->state->record_seq == 0)
    return fail(cudaErrorInvalidResourceHandle);
  if (pending(start->state->record_seq) || pending(end->state->record_seq))
    return fail(cudaErrorNotReady);
  *ms = static_cast<float>(end->state->time_ms - start->state->time_ms);
  return cudaSuccess;
}

// ---- capture and graphs ----------------------------------------------------------------------

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  Lock lock(g_mu);
  CUstream_st* s = resolve(stream);
  if (s->legacy || s->capture != nullptr) return fail(cudaErrorStreamCaptureUnsupported);
  if (mode != cudaStreamCaptureModeRelaxed && t_capture != nullptr)
    return fail(cudaErrorStreamCaptureUnsupported);
  auto* c = new Capture;
  c->id = g_next_capture_id++;
  g_captures[c->id] = c;
  c->thread = std::this_thread::get_id();
  c->mode = mode;
  c->origin = s;
  c->members.insert(s);
  s->capture = c;
  if (mode != cudaStreamCaptureModeRelaxed) t_capture = c;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  Lock lock(g_mu);
  *graph = nullptr;
  CUstream_st* s = resolve(stream);
  Capture* c = s->capture;
  if (c == nullptr || c->origin != s) return fail(cudaErrorInvalidValue);
  if (c->mode == cudaStreamCaptureModeThreadLocal && c->thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread);
  for (CUstream_st* m : c->members) m->capture = nullptr;
  if (t_capture == c) t_capture = nullptr;
  g_captures.erase(c->id);
  std::unique_ptr<Capture> owned(c);
  if (c->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = c->graph.release();
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  Lock lock(g_mu);
  CUstream_st* s = resolve(stream);
  if (s->legacy && t_capture != nullptr) {
    t_capture->invalidated = true;
    return fail(cudaErrorStreamCaptureImplicit);
  }
  *status = s->capture == nullptr     ? cudaStreamCaptureStatusNone
            : s->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return fail(cudaErrorInvalidResourceHandle);
  const std::vector<Op>* ops = &exec->ops;
  return enqueue(stream, "cudaGraphLaunch", [ops] {
    for (const Op& op : *ops) op();
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  Lock lock(g_mu);
  flush();  // a launch still queued runs the exec's operations
  delete exec;
  return cudaSuccess;
}

namespace lockstep_emu {
// Read at start-up: LOCKSTEP_EMU_SYNC=1 runs every operation when it is enqueued (a fault then
// surfaces at the call that issued it).
[[maybe_unused]] const bool g_sync_each_init = (g_sync_each = env_flag("LOCKSTEP_EMU_SYNC", false));
}  // namespace lockstep_emu

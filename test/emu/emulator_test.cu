// The CUDA emulator's own tests (label emu; emulation builds only, docs/cuda_emulation.md):
// that it runs CUDA C++ as a GPU would where lockstep's kernels depend on it (barriers, shuffles,
// stream order, capture), and that it stops what a GPU would fault on or hang at.

#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <lockstep_emu/runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace {

#define CHECK_CUDA(expr) REQUIRE((expr) == cudaSuccess)

template <class T>
T* device_array(size_t n) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(T)));
  return static_cast<T*>(p);
}

template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = device_array<T>(h.size());
  CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Runs `body` in a child process; returns (killed by SIGABRT, its stderr).
std::pair<bool, std::string> run_child(const std::function<void()>& body) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child dies of the emulator's abort, unseen by Catch's handlers
    dup2(fds[1], 2);
    close(fds[0]);
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    lockstep_emu::install_fault_handler();
    body();
    _exit(0);
  }
  close(fds[1]);
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, err};
}

__global__ void block_sum_kernel(const int* in, int n, int* out) {
  __shared__ int partial[256];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  partial[threadIdx.x] = i < n ? in[i] : 0;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

__global__ void warp_kernel(int* xor_sum, int* broadcast, int* down, unsigned* ballot) {
  const int lane = threadIdx.x % 32;
  int v = lane;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  xor_sum[threadIdx.x] = v;
  broadcast[threadIdx.x] = __shfl_sync(0xffffffffu, lane * 10, 3);
  down[threadIdx.x] = __shfl_down_sync(0xffffffffu, lane, 1);
  ballot[threadIdx.x] = __ballot_sync(0xffffffffu, lane % 2 == 0);
}

__global__ void fill_kernel(int* out, int n, int value) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[i] = value;
}

__global__ void increment_kernel(int* counter) { *counter += 1; }

__global__ void divergent_sync_kernel(int* out) {
  // Lane 0 waits for the block, the others for their warp, which lane 0 never joins. (A block
  // barrier some threads skip by exiting is no deadlock: exited threads count as arrived.)
  if (threadIdx.x == 0)
    __syncthreads();
  else
    __syncwarp();
  out[threadIdx.x] = 1;
}

__global__ void divergent_shuffle_kernel(int* out) {
  if (threadIdx.x % 32 >= 16) return;  // half the warp exits; the rest names it in the mask
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

// Racy on a GPU: each thread reads its lower neighbour's value with no barrier in between.
__global__ void missing_barrier_kernel(int* out) {
  __shared__ int value[64];
  value[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  out[threadIdx.x] = threadIdx.x == 0 ? 0 : value[threadIdx.x - 1];
}

// Racy on a GPU: a thread claims a slot with an atomic and fills it afterwards, while every
// thread reads all the claimed slots with no barrier in between.
__global__ void claim_then_fill_kernel(int* unfilled) {
  __shared__ int count;
  __shared__ int slot[64];
  if (threadIdx.x == 0) count = 0;
  slot[threadIdx.x] = -1;
  __syncthreads();
  const int mine = atomicAdd(&count, 1);
  slot[mine] = static_cast<int>(threadIdx.x);
  int missing = 0;
  for (int i = 0; i < count; ++i) missing += slot[i] < 0;
  unfilled[threadIdx.x] = missing;
}

// What each block finds in its __shared__ memory before writing it (then it writes it).
__global__ void shared_at_start_kernel(int* found) {
  __shared__ int value[2];
  if (threadIdx.x < 2) found[2 * blockIdx.x + threadIdx.x] = value[threadIdx.x];
  __syncthreads();
  if (threadIdx.x < 2) value[threadIdx.x] = 5;
}

__global__ void transcendental_kernel(const float* x, int n, float* e, float* l) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  e[i] = expf(x[i]);
  l[i] = log1pf(x[i]);
}

__global__ void multiply_add_kernel(const float* a, const float* b, const float* c, int n,
                                    float* plain, float* rounded) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  plain[i] = a[i] * b[i] + c[i];                        // nvcc may fuse this (--fmad=true)
  rounded[i] = __fadd_rn(__fmul_rn(a[i], b[i]), c[i]);  // never fused
}

// Races of other kinds, for the race check: threads of two blocks on one global word, lanes of a
// warp ordered by a shuffle only (which orders no memory), a plain read of a word other threads
// update atomically, threads writing one global word.
__global__ void across_blocks_kernel(int* x) {
  if (threadIdx.x != 0) return;
  if (blockIdx.x == 0)
    x[0] = 1;
  else
    x[1] = x[0];
}
__global__ void shuffle_is_no_fence_kernel(int* out) {
  __shared__ int value[32];
  value[threadIdx.x] = static_cast<int>(threadIdx.x);
  const int ready = __shfl_sync(0xffffffffu, 1, 0);
  out[threadIdx.x] = ready * value[(threadIdx.x + 1) % 32];
}
__global__ void read_while_counting_kernel(int* counter, int* seen) {
  atomicAdd(counter, 1);
  seen[threadIdx.x] = *counter;
}
__global__ void same_word_kernel(int* x) { x[0] = static_cast<int>(threadIdx.x); }

// Race-free, for the race check: the same exchange ordered by __syncwarp; every thread of every
// block counting with atomics and reading the slot it claimed through a volatile load; bytes of
// one word written by different threads.
__global__ void syncwarp_exchange_kernel(int* out) {
  __shared__ int value[32];
  value[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncwarp();
  out[threadIdx.x] = value[(threadIdx.x + 1) % 32];
}
__global__ void claim_kernel(unsigned* slots, int* counter, int* owner) {
  const int t = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(counter, 1);
  const unsigned key = static_cast<unsigned>(t % 8);
  const unsigned previous = atomicCAS(&slots[key], 0xffffffffu, key);
  const unsigned now = *static_cast<volatile unsigned*>(&slots[key]);
  owner[t] = previous == 0xffffffffu ? 1 : (now == key ? 0 : -1);
}
__global__ void byte_per_thread_kernel(unsigned char* flags) { flags[threadIdx.x] = 1; }

// Reads 8 bytes at `bytes + offset` as one int64_t (misaligned unless offset % 8 == 0).
__global__ void read_int64_kernel(const char* bytes, int offset, int64_t* out) {
  *out = *reinterpret_cast<const int64_t*>(bytes + offset);
}

// |a - b| in ulps (a, b finite, same sign).
int64_t ulps_apart(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

// The order blocks run in: each block takes a ticket.
__global__ void ticket_kernel(int* counter, int* ticket) {
  if (threadIdx.x == 0) ticket[blockIdx.x] = atomicAdd(counter, 1);
}

// Runs missing_barrier_kernel and claim_then_fill_kernel under `schedule`: (the lower
// neighbours seen right, no slot read unfilled).
std::pair<bool, bool> run_racy_kernels(const char* schedule) {
  lockstep_emu::set_schedule(schedule);
  const std::string racecheck = lockstep_emu::set_racecheck("off");  // races on purpose
  int* out = device_array<int>(64);
  missing_barrier_kernel<<<1, 64>>>(out);
  const std::vector<int> seen = to_host(out, 64);
  bool neighbours_right = true;
  for (int t = 1; t < 64; ++t) neighbours_right &= seen[t] == t;
  claim_then_fill_kernel<<<1, 64>>>(out);
  const std::vector<int> unfilled = to_host(out, 64);
  const bool all_filled =
      std::all_of(unfilled.begin(), unfilled.end(), [](int u) { return u == 0; });
  CHECK_CUDA(cudaFree(out));
  lockstep_emu::set_schedule(nullptr);
  lockstep_emu::set_racecheck(racecheck.c_str());
  return {neighbours_right, all_filled};
}

}  // namespace

TEST_CASE("emulator: a reverse or shuffled schedule exposes races a forward one hides", "[emu]") {
  // Forward order runs each thread to its next barrier before the next thread starts, so both
  // races compute the sequential answer; the other orders (shuffle is the default), with their
  // switches after atomics, do not.
  CHECK(run_racy_kernels("forward") == std::make_pair(true, true));
  CHECK(run_racy_kernels("reverse") == std::make_pair(false, false));
  CHECK(run_racy_kernels("shuffle:7") == std::make_pair(false, false));
  if (std::getenv("LOCKSTEP_EMU_SCHEDULE") == nullptr)  // the default: shuffle
    CHECK(run_racy_kernels(nullptr) == std::make_pair(false, false));

  // A race-free kernel computes the same under every schedule.
  std::vector<int> h(1000);
  std::iota(h.begin(), h.end(), 1);
  int* in = to_device(h);
  int* out = device_array<int>(4);
  for (const char* schedule : {"forward", "reverse", "shuffle", "shuffle:123"}) {
    INFO(schedule);
    lockstep_emu::set_schedule(schedule);
    block_sum_kernel<<<4, 256>>>(in, 1000, out);
    const std::vector<int> sums = to_host(out, 4);
    CHECK(sums == std::vector<int>({32896, 98432, 163968, 205204}));
  }

  // Blocks run in the schedule's order too.
  int* counter = device_array<int>(1);
  int* ticket = device_array<int>(8);
  const auto tickets = [&](const char* schedule) {
    lockstep_emu::set_schedule(schedule);
    CHECK_CUDA(cudaMemset(counter, 0, sizeof(int)));
    ticket_kernel<<<8, 32>>>(counter, ticket);
    return to_host(ticket, 8);
  };
  CHECK(tickets("forward") == std::vector<int>({0, 1, 2, 3, 4, 5, 6, 7}));
  CHECK(tickets("reverse") == std::vector<int>({7, 6, 5, 4, 3, 2, 1, 0}));
  std::vector<int> shuffled = tickets("shuffle:3");
  CHECK(shuffled != std::vector<int>({0, 1, 2, 3, 4, 5, 6, 7}));
  std::sort(shuffled.begin(), shuffled.end());
  CHECK(shuffled == std::vector<int>({0, 1, 2, 3, 4, 5, 6, 7}));
  lockstep_emu::set_schedule(nullptr);
  for (void* p : {(void*)in, (void*)out, (void*)counter, (void*)ticket}) CHECK_CUDA(cudaFree(p));
}

TEST_CASE("emulator: the race check finds threads of a launch that race, and only those", "[emu]") {
  // An instrumented build (LOCKSTEP_EMU_RACECHECK) checks every launch (fatal by default);
  // elsewhere the check is off and sees nothing.
  const std::string previous = lockstep_emu::set_racecheck("report");
#if defined(LOCKSTEP_EMU_RACECHECK)
  if (std::getenv("LOCKSTEP_EMU_RACECHECK") == nullptr) CHECK(previous == "fatal");
  const size_t racy = 1;
#else
  CHECK(previous == "off");
  const size_t racy = 0;
#endif
  (void)lockstep_emu::take_race_reports();
  int* x = device_array<int>(64);
  int* counter = device_array<int>(1);
  int* owner = device_array<int>(256);
  unsigned* slots = device_array<unsigned>(8);
  const auto races = [] {
    CHECK_CUDA(cudaDeviceSynchronize());
    return lockstep_emu::take_race_reports();
  };

  missing_barrier_kernel<<<1, 64>>>(x);
  CHECK(races() == racy);
  claim_then_fill_kernel<<<1, 64>>>(x);
  CHECK(races() >= racy);
  across_blocks_kernel<<<2, 32>>>(x);
  CHECK(races() == racy);
  shuffle_is_no_fence_kernel<<<1, 32>>>(x);
  CHECK(races() == racy);
  read_while_counting_kernel<<<1, 32>>>(counter, x);
  CHECK(races() == racy);
  same_word_kernel<<<1, 32>>>(x);
  CHECK(races() == racy);

  std::vector<int> h(1000);
  std::iota(h.begin(), h.end(), 1);
  int* in = to_device(h);
  block_sum_kernel<<<4, 256>>>(in, 1000, x);  // __shared__ reused by each block
  syncwarp_exchange_kernel<<<1, 32>>>(x);
  CHECK_CUDA(cudaMemset(slots, 0xff, 8 * sizeof(unsigned)));
  CHECK_CUDA(cudaMemset(counter, 0, sizeof(int)));
  claim_kernel<<<2, 128>>>(slots, counter, owner);
  ticket_kernel<<<8, 32>>>(counter, x);
  byte_per_thread_kernel<<<1, 64>>>(reinterpret_cast<unsigned char*>(x));
  fill_kernel<<<2, 64>>>(x, 64, 7);
  int *xs = device_array<int>(64), *bs = device_array<int>(64), *ds = device_array<int>(64);
  warp_kernel<<<1, 64>>>(xs, bs, ds, reinterpret_cast<unsigned*>(x));
  CHECK(races() == 0);
  const std::vector<int> owners = to_host(owner, 256);
  CHECK(std::count(owners.begin(), owners.end(), 1) == 8);   // one claim per key
  CHECK(std::count(owners.begin(), owners.end(), -1) == 0);  // and everyone sees it

  lockstep_emu::set_racecheck(previous.c_str());
  for (void* p : {(void*)x, (void*)counter, (void*)owner, (void*)slots, (void*)in, (void*)xs,
                  (void*)bs, (void*)ds})
    CHECK_CUDA(cudaFree(p));
}

// For the memory-access profile: one load or store per kernel line that matters.
__global__ void coalesced_copy_kernel(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i];
}
__global__ void strided_load_kernel(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i * 32];  // 128 bytes apart: a sector per lane
}
__global__ void bank_conflict_kernel(float* out) {
  __shared__ float tile[32 * 33];
  tile[threadIdx.x * 32] = 1.f;  // one bank for all 32 lanes
  __syncthreads();
  out[threadIdx.x] = tile[0];  // one word for all: a broadcast
  __syncthreads();
  tile[threadIdx.x * 33] = 2.f;  // padded: 32 banks
}
__global__ void divergent_loop_kernel(const float* x, float* out) {
  for (int k = 0; k < 4; ++k) {
    const unsigned i = k * 32 + threadIdx.x;
    const float v = x[i];
    if (v > 0.f)  // some lanes each side, which ones changing from trip to trip
      out[i] = v;
    else
      out[128 + i] = v;
  }
}
__global__ void same_address_atomic_kernel(int* counter) { atomicAdd(counter, 1); }

TEST_CASE("emulator: the memory-access profile sees warp instructions as a GPU serves them",
          "[emu]") {
  // Only instrumented code is profiled (the emulator's tests always are, in GCC builds).
#if defined(LOCKSTEP_EMU_RACECHECK)
  float* in = device_array<float>(64 * 32);
  float* out = device_array<float>(256);
  int* counter = device_array<int>(1);
  // Trip k: the lanes t with t % 4 <= k take the first side (8, 16, 24, 32 lanes).
  std::vector<float> signs(128);
  for (size_t i = 0; i < signs.size(); ++i) signs[i] = (i % 32) % 4 <= i / 32 ? 1.f : -1.f;
  float* x = to_device(signs);
  CHECK_CUDA(cudaDeviceSynchronize());
  (void)lockstep_emu::take_profile_lines();
  lockstep_emu::set_profile(true);
  coalesced_copy_kernel<<<2, 32>>>(in, out);
  strided_load_kernel<<<2, 32>>>(in, out);
  bank_conflict_kernel<<<1, 32>>>(out);
  divergent_loop_kernel<<<1, 32>>>(x, out);
  same_address_atomic_kernel<<<1, 32>>>(counter);
  CHECK_CUDA(cudaDeviceSynchronize());
  lockstep_emu::set_profile(false);
  const std::vector<lockstep_emu::ProfileLine> lines = lockstep_emu::take_profile_lines();
  // The places of one kernel, access kind and memory space, in code order.
  const auto of = [&](const char* kernel, char kind, bool shared) {
    std::vector<lockstep_emu::ProfileLine> found;
    for (const auto& l : lines)
      if (std::string(l.kernel) == kernel && l.kind == kind && l.shared == shared)
        found.push_back(l);
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.pc < b.pc; });
    return found;
  };

  for (const auto& l : lines)
    UNSCOPED_INFO(l.kernel << " " << lockstep_emu::code_place(l.pc) << " " << l.kind << " "
                           << (l.shared ? "shared" : "global") << " requests " << l.requests
                           << " lanes " << l.lanes << " units " << l.units << " ideal "
                           << l.ideal_units << " serial " << l.serial);
  // Two warps, 4 bytes per lane, contiguous: 4 sectors per request, as few as possible.
  const auto copy = of("coalesced_copy_kernel", 'r', false);
  REQUIRE(copy.size() == 1);
  CHECK(copy[0].requests == 2);
  CHECK(copy[0].lanes == 64);
  CHECK(copy[0].units == 8);
  CHECK(copy[0].ideal_units == 8);
  CHECK(copy[0].used_bytes == 256);
  // 128 bytes between lanes: 32 sectors per request where the bytes fit in 4.
  const auto strided = of("strided_load_kernel", 'r', false);
  REQUIRE(strided.size() == 1);
  CHECK(strided[0].requests == 2);
  CHECK(strided[0].units == 64);
  CHECK(strided[0].ideal_units == 8);
  // Shared memory: a 32-way bank conflict (32 wavefronts), a broadcast (1), a padded store (1).
  const auto stores = of("bank_conflict_kernel", 'w', true);
  REQUIRE(stores.size() == 2);
  uint64_t conflicted = 0, padded = 0;
  for (const auto& l : stores) (l.units == 32 ? conflicted : padded) += 1;
  CHECK(conflicted == 1);
  CHECK(padded == 1);
  for (const auto& l : stores) CHECK(l.ideal_units == 1);
  const auto broadcast = of("bank_conflict_kernel", 'r', true);
  REQUIRE(broadcast.size() == 1);
  CHECK(broadcast[0].units == 1);
  // A branch inside a loop, matched trip by trip though no lane takes a side as often as
  // another: each side's store touches the 4 sectors of its trip's 128 bytes (the cost of the
  // divergence), where its lanes' bytes would fit in 1, 2, 3, 4 (first side) or 3, 2, 1 sectors.
  const auto sides = of("divergent_loop_kernel", 'w', false);
  REQUIRE(sides.size() == 2);
  const auto& first = sides[0].lanes == 80 ? sides[0] : sides[1];
  const auto& second = sides[0].lanes == 80 ? sides[1] : sides[0];
  CHECK(first.lanes == 80);
  CHECK(first.requests == 4);
  CHECK(first.units == 16);
  CHECK(first.ideal_units == 10);
  CHECK(second.lanes == 48);
  CHECK(second.requests == 3);
  CHECK(second.units == 12);
  CHECK(second.ideal_units == 6);
  const auto loads = of("divergent_loop_kernel", 'r', false);
  REQUIRE(loads.size() == 1);
  CHECK(loads[0].requests == 4);
  CHECK(loads[0].lanes == 128);
  // 32 lanes adding to one address: served one after another.
  const auto atomics = of("same_address_atomic_kernel", 'a', false);
  REQUIRE(atomics.size() == 1);
  CHECK(atomics[0].requests == 1);
  CHECK(atomics[0].serial == 32);
  CHECK(atomics[0].units == 1);
  for (void* p : {(void*)in, (void*)out, (void*)counter, (void*)x}) CHECK_CUDA(cudaFree(p));
#else
  SUCCEED("not an instrumented build: nothing is profiled");
#endif
}

TEST_CASE("emulator: expf and log1pf give the host's bits, or a GPU's error with ulps on",
          "[emu]") {
  const int n = 4096;
  std::vector<float> h(n);
  for (int i = 0; i < n; ++i) h[i] = -20.0f + 40.0f * static_cast<float>(i) / n;  // h[2048] = 0
  float* x = to_device(h);
  float* e = device_array<float>(n);
  float* l = device_array<float>(n);
  const bool by_default = lockstep_emu::g_device_ulps;  // on unless LOCKSTEP_EMU_ULPS=0
  const auto run = [&](bool ulps) {
    lockstep_emu::set_device_ulps(ulps);
    transcendental_kernel<<<n / 256, 256>>>(x, n, e, l);
    std::pair<std::vector<float>, std::vector<float>> out{to_host(e, n), to_host(l, n)};
    lockstep_emu::set_device_ulps(by_default);
    return out;
  };
  const auto [e_host, l_host] = run(false);
  const auto [e_gpu, l_gpu] = run(true);
  int e_moved = 0, l_moved = 0;
  for (int i = 0; i < n; ++i) {
    INFO("x = " << h[i]);
    CHECK(e_host[i] == std::exp(h[i]));
    CHECK(ulps_apart(e_gpu[i], e_host[i]) <= 2);  // CUDA's documented bound for expf
    e_moved += e_gpu[i] != e_host[i];
    if (h[i] > -1.0f) {
      CHECK(l_host[i] == std::log1p(h[i]));
      CHECK(ulps_apart(l_gpu[i], l_host[i]) <= 1);  // and for log1pf
      l_moved += l_gpu[i] != l_host[i];
    }
  }
  CHECK(e_gpu[2048] == 1.0f);  // exact where every implementation is: expf(0), log1pf(0)
  CHECK(l_gpu[2048] == 0.0f);
  CHECK(e_moved > n / 2);                     // 4 in 5 move, by -2..2 ulps
  CHECK(l_moved > n / 4);                     // 2 in 3 of those with x > -1
  const auto [e_again, l_again] = run(true);  // a function of the argument: deterministic
  CHECK(std::memcmp(e_again.data(), e_gpu.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(l_again.data(), l_gpu.data(), n * sizeof(float)) == 0);  // NaN for x < -1
  for (void* p : {(void*)x, (void*)e, (void*)l}) CHECK_CUDA(cudaFree(p));
}

TEST_CASE("emulator: a * b + c fuses only in a LOCKSTEP_EMU_FMA build, _rn intrinsics never",
          "[emu]") {
  const int n = 1024;
  std::vector<float> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[i] = 1.0f + static_cast<float>(i) / 3.0f;
    b[i] = 1.0f - static_cast<float>(i) / 7.0f;
    c[i] = -a[i] * b[i];  // the product's rounding error is all that is left when fused
  }
  float *da = to_device(a), *db = to_device(b), *dc = to_device(c);
  float* plain = device_array<float>(n);
  float* rounded = device_array<float>(n);
  multiply_add_kernel<<<n / 256, 256>>>(da, db, dc, n, plain, rounded);
  const std::vector<float> p = to_host(plain, n), r = to_host(rounded, n);
  int fused = 0;
  for (int i = 0; i < n; ++i) {
    volatile float product = a[i] * b[i];  // rounded: this file's host code may fuse too
    const float unfused = product + c[i];
    CHECK(r[i] == unfused);
#if defined(LOCKSTEP_EMU_FMA)
    CHECK(p[i] == std::fma(a[i], b[i], c[i]));
#else
    CHECK(p[i] == unfused);
#endif
    fused += p[i] != unfused;
  }
#if defined(LOCKSTEP_EMU_FMA)
  CHECK(fused > n / 2);
#else
  CHECK(fused == 0);
#endif
  for (void* q : {(void*)da, (void*)db, (void*)dc, (void*)plain, (void*)rounded})
    CHECK_CUDA(cudaFree(q));
}

TEST_CASE("emulator: __syncthreads and __shared__ give a block reduction", "[emu]") {
  const int n = 1000;
  std::vector<int> h(n);
  std::iota(h.begin(), h.end(), 1);
  int* in = to_device(h);
  int* out = device_array<int>(4);
  block_sum_kernel<<<4, 256>>>(in, n, out);
  CHECK_CUDA(cudaGetLastError());
  const std::vector<int> sums = to_host(out, 4);
  for (int b = 0; b < 4; ++b) {
    int expect = 0;
    for (int i = b * 256; i < std::min(n, (b + 1) * 256); ++i) expect += h[i];
    CHECK(sums[b] == expect);
  }
  CHECK_CUDA(cudaFree(in));
  CHECK_CUDA(cudaFree(out));
}

TEST_CASE(
    "emulator: cudaProfilerStart and Stop bound the profile (test/emu/profile_report_test.sh)",
    "[emu]") {
  // A launch before the range, one in it, one after: with LOCKSTEP_EMU_PROFILE set, the script
  // finds only the one in the range in the file.
  int* x = device_array<int>(1024);
  fill_kernel<<<4, 256>>>(x, 1024, 1);
  CHECK_CUDA(cudaProfilerStart());
  block_sum_kernel<<<4, 256>>>(x, 1000, x + 1000);
  CHECK_CUDA(cudaProfilerStop());
  increment_kernel<<<1, 1>>>(x);
  const std::vector<int> h = to_host(x, 1024);
  CHECK(h[0] == 2);
  CHECK(h[1000] == 256);
  CHECK(h[1003] == 1000 - 3 * 256);
  CHECK_CUDA(cudaFree(x));
}

TEST_CASE("emulator: warp shuffles and votes", "[emu]") {
  int* x = device_array<int>(64);
  int* b = device_array<int>(64);
  int* d = device_array<int>(64);
  unsigned* v = device_array<unsigned>(64);
  warp_kernel<<<1, 64>>>(x, b, d, v);
  const auto xs = to_host(x, 64), bs = to_host(b, 64), ds = to_host(d, 64);
  const auto vs = to_host(v, 64);
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    CHECK(xs[t] == 496);  // 0 + 1 + ... + 31 in every lane
    CHECK(bs[t] == 30);
    CHECK(ds[t] == (lane == 31 ? 31 : lane + 1));  // the last lane keeps its own value
    CHECK(vs[t] == 0x55555555u);
  }
  for (void* p : {(void*)x, (void*)b, (void*)d, (void*)v}) CHECK_CUDA(cudaFree(p));
}

TEST_CASE("emulator: work runs at a synchronisation, not at the call", "[emu]") {
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int* d = device_array<int>(8);
  int* pinned = nullptr;
  CHECK_CUDA(cudaMallocHost(reinterpret_cast<void**>(&pinned), 8 * sizeof(int)));
  std::memset(pinned, 0, 8 * sizeof(int));
  fill_kernel<<<1, 32, 0, s>>>(d, 8, 7);
  CHECK_CUDA(cudaMemcpyAsync(pinned, d, 8 * sizeof(int), cudaMemcpyDeviceToHost, s));
  CHECK(pinned[0] == 0);  // not synchronised yet: the copy has not happened

  cudaEvent_t e;
  CHECK_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CHECK_CUDA(cudaEventRecord(e, s));
  CHECK(cudaEventQuery(e) == cudaErrorNotReady);
  CHECK(cudaGetLastError() == cudaErrorNotReady);  // recorded as the last error, as in CUDA
  CHECK_CUDA(cudaEventSynchronize(e));
  CHECK(pinned[0] == 7);
  CHECK(pinned[7] == 7);

  // A copy into pageable memory returns when the data is there.
  std::vector<int> pageable(8, 0);
  fill_kernel<<<1, 32, 0, s>>>(d, 8, 9);
  CHECK_CUDA(cudaMemcpyAsync(pageable.data(), d, 8 * sizeof(int), cudaMemcpyDeviceToHost, s));
  CHECK(pageable[3] == 9);
  // A copy from pageable memory takes the data at the call.
  pageable.assign(8, 5);
  CHECK_CUDA(cudaMemcpyAsync(d, pageable.data(), 8 * sizeof(int), cudaMemcpyHostToDevice, s));
  pageable.assign(8, 6);
  CHECK(to_host(d, 8)[0] == 5);

  CHECK_CUDA(cudaEventDestroy(e));
  CHECK_CUDA(cudaFreeHost(pinned));
  CHECK_CUDA(cudaFree(d));
  CHECK_CUDA(cudaStreamDestroy(s));
}

TEST_CASE("emulator: fresh and freed device memory reads as 0xff bytes", "[emu]") {
  int* d = device_array<int>(16);
  const auto fresh = to_host(d, 16);
  for (int v : fresh) CHECK(v == -1);
  float* f = device_array<float>(4);
  for (float v : to_host(f, 4)) CHECK(std::isnan(v));
  // So does every block's __shared__ memory, whatever the block before it left there.
  shared_at_start_kernel<<<4, 32>>>(d);
  for (int v : to_host(d, 8)) CHECK(v == -1);
  CHECK_CUDA(cudaFree(d));
  CHECK_CUDA(cudaFree(f));
}

TEST_CASE("emulator: stream capture records work and refuses synchronisation", "[emu]") {
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int* counter = to_device(std::vector<int>{0});

  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  cudaStreamCaptureStatus status;
  CHECK_CUDA(cudaStreamIsCapturing(s, &status));
  CHECK(status == cudaStreamCaptureStatusActive);
  increment_kernel<<<1, 1, 0, s>>>(counter);
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamEndCapture(s, &graph));
  CHECK(to_host(counter, 1)[0] == 0);  // captured, not run
  cudaGraphExec_t exec = nullptr;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphLaunch(exec, s));
  CHECK_CUDA(cudaGraphLaunch(exec, s));
  CHECK_CUDA(cudaStreamSynchronize(s));
  CHECK(to_host(counter, 1)[0] == 2);

  // Synchronising the capturing stream fails and invalidates the capture.
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  increment_kernel<<<1, 1, 0, s>>>(counter);
  CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
  cudaGraph_t bad = nullptr;
  CHECK(cudaStreamEndCapture(s, &bad) == cudaErrorStreamCaptureInvalidated);
  CHECK(bad == nullptr);
  // So does a copy through pageable memory, and work on the legacy stream.
  std::vector<int> pageable(1);
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  CHECK(cudaMemcpyAsync(pageable.data(), counter, sizeof(int), cudaMemcpyDeviceToHost, s) ==
        cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamEndCapture(s, &bad) == cudaErrorStreamCaptureInvalidated);
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  increment_kernel<<<1, 1>>>(counter);
  CHECK(cudaGetLastError() == cudaErrorStreamCaptureImplicit);
  CHECK(cudaStreamEndCapture(s, &bad) == cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  CHECK(to_host(counter, 1)[0] == 2);  // nothing of the failed captures ran

  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  CHECK_CUDA(cudaFree(counter));
  CHECK_CUDA(cudaStreamDestroy(s));
}

TEST_CASE("emulator: a launch configuration a GPU refuses is an error", "[emu]") {
  int* d = device_array<int>(1);
  fill_kernel<<<1, 2048>>>(d, 1, 0);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  fill_kernel<<<0, 32>>>(d, 1, 0);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK_CUDA(cudaFree(d));
}

TEST_CASE("emulator: CUB sorts by the requested key bits only, encodes runs, scans in place",
          "[emu]") {
  // Keys that differ only above bit 4 are equal for a sort over bits [0, 4): input order stays.
  const std::vector<uint64_t> keys{0x13, 0x02, 0x23, 0x01, 0x03};
  const std::vector<int> values{0, 1, 2, 3, 4};
  uint64_t* k_in = to_device(keys);
  int* v_in = to_device(values);
  uint64_t* k_out = device_array<uint64_t>(5);
  int* v_out = device_array<int>(5);
  size_t bytes = 0;
  CHECK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k_in, k_out, v_in, v_out, 5, 0, 4));
  void* temp = device_array<char>(bytes);
  CHECK_CUDA(cub::DeviceRadixSort::SortPairs(temp, bytes, k_in, k_out, v_in, v_out, 5, 0, 4));
  CHECK(to_host(v_out, 5) == std::vector<int>{3, 1, 0, 2, 4});

  const std::vector<uint64_t> sorted{1, 1, 2, 5, 5, 5};
  uint64_t* s_in = to_device(sorted);
  uint64_t* unique = device_array<uint64_t>(6);
  int64_t* counts = device_array<int64_t>(6);
  int64_t* runs = device_array<int64_t>(1);
  size_t rle_bytes = 0;
  CHECK_CUDA(cub::DeviceRunLengthEncode::Encode(nullptr, rle_bytes, s_in, unique, counts, runs, 6));
  void* rle_temp = device_array<char>(rle_bytes);
  CHECK_CUDA(
      cub::DeviceRunLengthEncode::Encode(rle_temp, rle_bytes, s_in, unique, counts, runs, 6));
  CHECK(to_host(runs, 1)[0] == 3);
  CHECK(to_host(counts, 3) == std::vector<int64_t>{2, 1, 3});

  size_t scan_bytes = 0;
  CHECK_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, counts, counts, 3));
  void* scan_temp = device_array<char>(std::max<size_t>(scan_bytes, 1));
  CHECK_CUDA(cub::DeviceScan::ExclusiveSum(scan_temp, scan_bytes, counts, counts, 3));
  CHECK(to_host(counts, 3) == std::vector<int64_t>{0, 2, 3});
  for (void* p : {(void*)k_in, (void*)v_in, (void*)k_out, (void*)v_out, temp, (void*)s_in,
                  (void*)unique, (void*)counts, (void*)runs, rle_temp, scan_temp})
    CHECK_CUDA(cudaFree(p));
}

TEST_CASE("emulator: cuBLAS GEMM, beta = 0 ignores C, TF32 rounds the inputs", "[emu]") {
  // Column-major 2x2: C = A B with A = [1 2; 3 4], B = identity.
  float* a = to_device(std::vector<float>{1, 3, 2, 4});
  float* b = to_device(std::vector<float>{1, 0, 0, 1});
  float* c = device_array<float>(4);  // NaN-filled: beta = 0 must not read it
  cublasHandle_t h;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, a, 2, b, 2, &zero, c, 2) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(to_host(c, 4) == std::vector<float>{1, 3, 2, 4});
  REQUIRE(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 2, &one, a, 2, b, 2, &zero, c, 2) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(to_host(c, 4) == std::vector<float>{1, 2, 3, 4});

  const float fine = 1.0f + std::ldexp(1.0f, -20);  // below TF32's 10 mantissa bits
  float* x = to_device(std::vector<float>{fine});
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, x, 1, b, 1, &zero, c, 1) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(to_host(c, 1)[0] == fine);
  REQUIRE(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, x, 1, b, 1, &zero, c, 1) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(to_host(c, 1)[0] == 1.0f);
  REQUIRE(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
  for (void* p : {(void*)a, (void*)b, (void*)c, (void*)x}) CHECK_CUDA(cudaFree(p));
}

TEST_CASE("emulator: stops what a GPU would fault on or hang at, naming it", "[emu]") {
#if !defined(__SANITIZE_ADDRESS__)  // under ASan device memory is ASan's (out-of-bounds reports)
  SECTION("host code reading device memory") {
    const auto [aborted, err] = run_child([] {
      int* d = device_array<int>(4);
      volatile int v = d[0];
      (void)v;
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("host code accessed device memory"));
  }
#endif
  SECTION("a host pointer passed to a kernel") {
    const auto [aborted, err] = run_child([] {
      std::vector<int> host(32);
      fill_kernel<<<1, 32>>>(host.data(), 32, 1);
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("kernel fill_kernel: argument 0"));
    CHECK_THAT(err, Catch::Contains("host memory"));
  }
  SECTION("barriers in divergent code") {
    const auto [aborted, err] = run_child([] {
      int* d = device_array<int>(32);
      divergent_sync_kernel<<<1, 32>>>(d);
      (void)cudaDeviceSynchronize();
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("kernel divergent_sync_kernel: block (0,0,0) deadlocked"));
  }
  SECTION("a shuffle whose mask names exited lanes") {
    const auto [aborted, err] = run_child([] {
      int* d = device_array<int>(32);
      divergent_shuffle_kernel<<<1, 32>>>(d);
      (void)cudaDeviceSynchronize();
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("waits for lanes that have exited"));
  }
  SECTION("a copy past the end of an allocation") {
    const auto [aborted, err] = run_child([] {
      int* d = device_array<int>(4);
      std::vector<int> host(8);
      (void)cudaMemcpy(host.data(), d, 8 * sizeof(int), cudaMemcpyDeviceToHost);
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("is not inside one live device or pinned allocation"));
  }
#if defined(LOCKSTEP_EMU_RACECHECK)
  SECTION("threads that race (the race check)") {
    const auto [aborted, err] = run_child([] {
      lockstep_emu::set_racecheck("fatal");
      int* d = device_array<int>(64);
      missing_barrier_kernel<<<1, 64>>>(d);
      (void)cudaDeviceSynchronize();
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("kernel missing_barrier_kernel: data race on __shared__"));
    CHECK_THAT(err, Catch::Contains("no __syncthreads between them"));
    CHECK_THAT(err, Catch::Contains("missing_barrier_kernel"));
  }
#endif
  SECTION("a pointer argument not aligned to its type") {
    const auto [aborted, err] = run_child([] {
      int64_t* d = device_array<int64_t>(4);
      fill_kernel<<<1, 32>>>(reinterpret_cast<int*>(reinterpret_cast<char*>(d) + 2), 4, 1);
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("kernel fill_kernel: argument 0"));
    CHECK_THAT(err, Catch::Contains("is not aligned to the 4 bytes of the type it points to"));
  }
#if defined(LOCKSTEP_EMU_RACECHECK)
  SECTION("a misaligned access in a kernel (instrumented code)") {
    int64_t* d = device_array<int64_t>(4);
    char* bytes = reinterpret_cast<char*>(d);
    CHECK_CUDA(cudaMemset(bytes, 1, 16));
    read_int64_kernel<<<1, 1>>>(bytes, 8, d);  // aligned: runs
    CHECK(to_host(d, 1)[0] == 0x0101010101010101);
    const auto [aborted, err] = run_child([bytes, d] {
      read_int64_kernel<<<1, 1>>>(bytes, 4, d);
      (void)cudaDeviceSynchronize();
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("kernel read_int64_kernel: a 8-byte access"));
    CHECK_THAT(err, Catch::Contains("not aligned to 8 bytes, at "));
    CHECK_THAT(err, Catch::Contains("emulator_test.cu:"));
    CHECK_CUDA(cudaFree(d));
  }
#endif
  SECTION("a schedule it does not know") {
    const auto [aborted, err] = run_child([] { lockstep_emu::set_schedule("backwards"); });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("LOCKSTEP_EMU_SCHEDULE=backwards: expected forward"));
  }
  SECTION("CUB temp storage sized for fewer items") {
    const auto [aborted, err] = run_child([] {
      float* in = device_array<float>(4096);
      float* out = device_array<float>(1);
      size_t bytes = 0;
      (void)cub::DeviceReduce::Sum(nullptr, bytes, in, out, 32);
      void* temp = device_array<char>(bytes);
      (void)cub::DeviceReduce::Sum(temp, bytes, in, out, 4096);
    });
    CHECK(aborted);
    CHECK_THAT(err, Catch::Contains("bytes of temp storage"));
  }
}

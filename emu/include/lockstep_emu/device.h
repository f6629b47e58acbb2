#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): CUDA C++'s device-side vocabulary for host
// C++. emu/translate_cu.py puts this first in every kernels/cuda/*.cu it turns into C++, and turns
// each `kernel<<<grid, block, shared, stream>>>(args)` into a ::lockstep_emu::launch(...) call.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"
#include "lockstep_emu/runtime.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __launch_bounds__(...)

// The emulator's own device-side helpers (atomics, the shuffles' exchange slots) are not
// instrumented by a race-check build (LOCKSTEP_EMU_RACECHECK): atomics report themselves.
#define LOCKSTEP_EMU_UNCHECKED __attribute__((no_sanitize("thread")))

#define threadIdx (::lockstep_emu::g_thread_idx)
#define blockIdx (::lockstep_emu::g_block_idx)
#define blockDim (::lockstep_emu::g_block_dim)
#define gridDim (::lockstep_emu::g_grid_dim)
static constexpr int warpSize = 32;

// Float math: CUDA's float overloads in the global namespace, as device code sees them.
using std::ceil;
using std::exp;
using std::fabs;
using std::floor;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::log;
using std::log1p;
using std::pow;
using std::sqrt;
using std::tanh;

// Explicitly rounded operations: exactly the IEEE operations. The emulation build compiles with
// -ffp-contract=off, so nothing is fused behind them; a LOCKSTEP_EMU_FMA build fuses a * b + c
// in kernels as nvcc does by default (--fmad=true), and these stay unfused there as on a GPU:
// their operands and result pass through an empty asm the compiler cannot look through.
#if defined(LOCKSTEP_EMU_FMA)
#define LOCKSTEP_EMU_UNFUSED(...) asm volatile("" : "+x"(__VA_ARGS__))
#else
#define LOCKSTEP_EMU_UNFUSED(...) (void)0
#endif
namespace lockstep_emu {
template <class T, class Op>
inline T rounded(T a, T b, Op op) {
  LOCKSTEP_EMU_UNFUSED(a);
  LOCKSTEP_EMU_UNFUSED(b);
  T r = op(a, b);
  LOCKSTEP_EMU_UNFUSED(r);
  return r;
}
}  // namespace lockstep_emu
inline float __fadd_rn(float a, float b) {
  return ::lockstep_emu::rounded(a, b, [](float x, float y) { return x + y; });
}
inline float __fsub_rn(float a, float b) {
  return ::lockstep_emu::rounded(a, b, [](float x, float y) { return x - y; });
}
inline float __fmul_rn(float a, float b) {
  return ::lockstep_emu::rounded(a, b, [](float x, float y) { return x * y; });
}
inline float __fdiv_rn(float a, float b) {
  return ::lockstep_emu::rounded(a, b, [](float x, float y) { return x / y; });
}
inline float __frcp_rn(float a) { return __fdiv_rn(1.0f, a); }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) {
  return ::lockstep_emu::rounded(a, b, [](double x, double y) { return x + y; });
}
inline double __dmul_rn(double a, double b) {
  return ::lockstep_emu::rounded(a, b, [](double x, double y) { return x * y; });
}
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline float __saturatef(float a) { return a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a; }

// CUDA's single-precision transcendental functions are not correctly rounded: their results may
// lie up to a documented number of ulps from the exact value (CUDA C++ Programming Guide,
// "Mathematical Functions"), so a GPU's expf need not give the host's bits. The emulator moves
// each result by a pseudo-random number of ulps within that bound, the same for the same
// argument, so a test that expects CPU = CUDA bits where a GPU cannot give them fails on the
// emulator too (LOCKSTEP_EMU_ULPS=0, or set_device_ulps(false), keeps the host's results).
namespace lockstep_emu {
extern bool g_device_ulps;
inline float within_ulps(float host, float x, unsigned max_ulps, uint32_t function) {
  uint32_t bits, arg;
  std::memcpy(&bits, &host, 4);
  std::memcpy(&arg, &x, 4);
  const uint32_t magnitude = bits & 0x7fffffffu;
  // Arguments where every implementation is exact (x = 0) and results that are zero, subnormal,
  // infinite or NaN keep the host's value.
  if (!g_device_ulps || (arg & 0x7fffffffu) == 0 || magnitude < 0x00800000u ||
      magnitude >= 0x7f800000u)
    return host;
  uint64_t z = (static_cast<uint64_t>(arg) << 8 | function) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
  z ^= z >> 32;
  const int64_t steps = static_cast<int64_t>(z % (2 * max_ulps + 1)) - max_ulps;
  const int64_t moved = static_cast<int64_t>(magnitude) + steps;
  if (moved < 0x00800000 || moved >= 0x7f800000) return host;  // stays normal and finite
  bits = static_cast<uint32_t>(moved) | (bits & 0x80000000u);
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
// Maximum ulp errors as documented for CUDA 12/13 (full range).
inline float device_expf(float x) { return within_ulps(std::exp(x), x, 2, 1); }
inline float device_exp2f(float x) { return within_ulps(std::exp2(x), x, 2, 2); }
inline float device_expm1f(float x) { return within_ulps(std::expm1(x), x, 1, 3); }
inline float device_logf(float x) { return within_ulps(std::log(x), x, 1, 4); }
inline float device_log2f(float x) { return within_ulps(std::log2(x), x, 1, 5); }
inline float device_log1pf(float x) { return within_ulps(std::log1p(x), x, 1, 6); }
inline float device_tanhf(float x) { return within_ulps(std::tanh(x), x, 2, 7); }
// The intrinsics are less accurate still (__expf: 2 + floor(|1.173 x|) ulps); 2 is a floor.
inline float device_fast_expf(float x) { return within_ulps(std::exp(x), x, 2, 8); }
inline float device_fast_logf(float x) { return within_ulps(std::log(x), x, 2, 9); }
}  // namespace lockstep_emu
#define expf(x) ::lockstep_emu::device_expf(x)
#define exp2f(x) ::lockstep_emu::device_exp2f(x)
#define expm1f(x) ::lockstep_emu::device_expm1f(x)
#define logf(x) ::lockstep_emu::device_logf(x)
#define log2f(x) ::lockstep_emu::device_log2f(x)
#define log1pf(x) ::lockstep_emu::device_log1pf(x)
#define tanhf(x) ::lockstep_emu::device_tanhf(x)
#define __expf(x) ::lockstep_emu::device_fast_expf(x)
#define __logf(x) ::lockstep_emu::device_fast_logf(x)

// CUDA's min/max overloads: fminf/fmaxf for floats (a NaN operand loses), the usual for ints.
inline float max(float a, float b) { return std::fmax(a, b); }
inline float min(float a, float b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
inline T max(T a, T b) {
  return a < b ? b : a;
}
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
inline T min(T a, T b) {
  return b < a ? b : a;
}

// Bits.
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// Fences: the threads of a block switch only at barriers, so a compiler barrier is enough.
inline void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned) { ::lockstep_emu::spin_pause(); }

// Atomics: no other thread runs between a thread's switches, so plain read-modify-writes are
// atomic here. Under a reverse or shuffled schedule (LOCKSTEP_EMU_SCHEDULE) a thread may switch
// right after one: other threads then run between its claim and what it does next.
namespace lockstep_emu {
template <class T, class F>
LOCKSTEP_EMU_UNCHECKED inline T atomic_rmw(T* p, F update) {
#if defined(LOCKSTEP_EMU_RACECHECK)
  race_atomic(p, sizeof(T), __builtin_return_address(0));
#endif
  const T old = *p;
  *p = update(old);
  if (g_yield_at_atomics) atomic_point();
  return old;
}
}  // namespace lockstep_emu
template <class T>
inline T atomicAdd(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return old + v; });
}
template <class T>
inline T atomicSub(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return old - v; });
}
template <class T>
inline T atomicExch(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T) { return v; });
}
template <class T>
inline T atomicMax(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return old < v ? v : old; });
}
template <class T>
inline T atomicMin(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return v < old ? v : old; });
}
template <class T>
inline T atomicOr(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return old | v; });
}
template <class T>
inline T atomicAnd(T* p, T v) {
  return ::lockstep_emu::atomic_rmw(p, [v](T old) { return old & v; });
}
template <class T>
inline T atomicCAS(T* p, T compare, T value) {
  return ::lockstep_emu::atomic_rmw(
      p, [compare, value](T old) { return old == compare ? value : old; });
}

// Barriers and warp collectives.
inline void __syncthreads() { ::lockstep_emu::block_sync(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::lockstep_emu::warp_sync(mask, true); }
inline unsigned __activemask() { return ::lockstep_emu::active_lanes(); }

namespace lockstep_emu {
// One shuffle round: every lane of `mask` publishes its value, meets the others, then reads
// lane `src` (its own value where src is outside its segment of `width` lanes). Rounds
// alternate between two buffers, so a lane that runs ahead cannot overwrite a value a slower
// lane has still to read.
template <class T>
LOCKSTEP_EMU_UNCHECKED inline T shuffle(unsigned mask, T v, int src, bool valid) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>,
                "shuffles of values up to 8 bytes");
  uint64_t* slots = warp_slots();
  const unsigned lane = lane_id();
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  slots[lane] = bits;
  warp_sync(mask);
  if (!valid) return v;
  T out;
  std::memcpy(&out, &slots[src & 31], sizeof(T));
  return out;
}
LOCKSTEP_EMU_UNCHECKED inline unsigned vote(unsigned mask, bool predicate) {
  uint64_t* slots = warp_slots();
  slots[lane_id()] = predicate ? 1 : 0;
  warp_sync(mask);
  unsigned ballot = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && slots[l]) ballot |= 1u << l;
  return ballot;
}
}  // namespace lockstep_emu

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = static_cast<int>(::lockstep_emu::lane_id());
  return ::lockstep_emu::shuffle(mask, v, (lane & ~(width - 1)) + (src & (width - 1)), true);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = static_cast<int>(::lockstep_emu::lane_id());
  const int src = lane ^ lane_mask;
  return ::lockstep_emu::shuffle(mask, v, src, (src & ~(width - 1)) == (lane & ~(width - 1)));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(::lockstep_emu::lane_id());
  const int src = lane + static_cast<int>(delta);
  return ::lockstep_emu::shuffle(mask, v, src, (src & ~(width - 1)) == (lane & ~(width - 1)));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(::lockstep_emu::lane_id());
  const int src = lane - static_cast<int>(delta);
  return ::lockstep_emu::shuffle(mask, v, src, src >= (lane & ~(width - 1)));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::lockstep_emu::vote(mask, predicate != 0);
}
inline int __any_sync(unsigned mask, int predicate) {
  return ::lockstep_emu::vote(mask, predicate != 0) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return ::lockstep_emu::vote(mask, predicate != 0) == (mask & ::lockstep_emu::active_lanes());
}

namespace lockstep_emu {

/// `kernel<<<grid, block, shared, stream>>>(args...)`, as emu/translate_cu.py writes it:
/// launch("kernel", [](auto... a) { kernel(a...); }, grid, block, shared, stream)(args...).
/// The arguments are copied at the call (as CUDA copies a launch's parameters), the grid runs
/// in stream order.
template <class Body>
struct Launch {
  Body body;
  Grid grid;
  cudaStream_t stream;

  template <class... A>
  void operator()(A... args) const {
    if (check_grid(grid) != cudaSuccess) return;
    int index = 0;
    (check_argument(args, index++), ...);
    auto op = [body = body, grid = grid, packed = std::make_tuple(args...)]() {
      struct Call {
        const Body* body;
        const std::tuple<A...>* args;
        LOCKSTEP_EMU_UNCHECKED static void run(void* self) {  // (host code: not profiled)
          auto* c = static_cast<Call*>(self);
          std::apply(*c->body, *c->args);
        }
      } call{&body, &packed};
      Grid g = grid;
      g.params = &packed;  // (constant memory on a GPU: not profiled or race-checked)
      g.params_bytes = sizeof(packed);
      run_grid(g, &Call::run, &call);
    };
    enqueue(stream, grid.kernel, std::move(op));
  }

 private:
  template <class T>
  void check_argument(const T& v, int index) const {
    if constexpr (std::is_pointer_v<T>) {
      using E = std::remove_cv_t<std::remove_pointer_t<T>>;
      size_t align = 1;
      if constexpr (std::is_object_v<E>) align = alignof(E);
      require_kernel_pointer(v, align, grid.kernel, index);
    }
  }
};

template <class Body>
Launch<Body> launch(const char* kernel, Body body, dim3 grid, dim3 block, size_t shared = 0,
                    cudaStream_t stream = nullptr) {
  return Launch<Body>{body, Grid{grid, block, shared, kernel}, stream};
}

}  // namespace lockstep_emu

#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): the CUB device-wide algorithms lockstep calls,
// as host loops run in stream order. Same two-phase protocol as CUB: a call with a null temp
// pointer only sets the temp size; a call with too little temp storage, or with ranges outside
// device memory, stops with a message (on a GPU it would corrupt memory).

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "cuda_runtime_api.h"
#include "lockstep_emu/runtime.h"

namespace cub {
namespace detail_emu {

// The temp storage CUB would want: enough to hold a copy of the items (what a real radix sort
// double-buffers), so a caller that sizes it from one call and passes it to another with more
// items is caught.
inline size_t temp_for(size_t items, size_t item_bytes) { return items * item_bytes + 1024; }

// True for a size query; otherwise checks the temp storage of a run.
inline bool query(void* temp, size_t& temp_bytes, size_t required, const char* what) {
  if (temp == nullptr) {
    temp_bytes = required;
    return true;
  }
  if (temp_bytes < required)
    ::lockstep_emu::fatal("%s: %zu bytes of temp storage, %zu needed (sized for fewer items?)",
                          what, temp_bytes, required);
  ::lockstep_emu::require_device(temp, required, what);
  return false;
}

template <class T>
T pairwise_sum(const T* x, size_t n) {
  if (n == 0) return T{};
  if (n <= 8) {
    T s = x[0];
    for (size_t i = 1; i < n; ++i) s = s + x[i];
    return s;
  }
  const size_t half = n / 2;
  return pairwise_sum(x, half) + pairwise_sum(x + half, n - half);
}

}  // namespace detail_emu

struct DeviceRadixSort {
  /// Stable sort of (key, value) pairs by the key bits [begin_bit, end_bit): keys that differ
  /// only outside those bits keep their input order, as in CUB.
  template <class K, class V, class N>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                               const V* values_in, V* values_out, N num_items, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t stream = nullptr) {
    static_assert(std::is_unsigned_v<K>, "the emulator sorts unsigned keys");
    const auto n = static_cast<size_t>(num_items);
    constexpr const char* what = "cub::DeviceRadixSort::SortPairs";
    if (detail_emu::query(temp, temp_bytes, detail_emu::temp_for(n, sizeof(K) + sizeof(V)), what))
      return cudaSuccess;
    if (begin_bit < 0 || end_bit > int(sizeof(K) * 8) || begin_bit > end_bit)
      return ::lockstep_emu::fail(cudaErrorInvalidValue);
    ::lockstep_emu::require_device(keys_in, n * sizeof(K), what);
    ::lockstep_emu::require_device(keys_out, n * sizeof(K), what);
    ::lockstep_emu::require_device(values_in, n * sizeof(V), what);
    ::lockstep_emu::require_device(values_out, n * sizeof(V), what);
    const int bits = end_bit - begin_bit;
    const K mask = bits >= int(sizeof(K) * 8) ? ~K{0} : static_cast<K>((K{1} << bits) - 1);
    return ::lockstep_emu::enqueue(stream, what, [=] {
      if (::lockstep_emu::g_profiling)  // CUB's onesweep: a histogram pass, 8 bits per pass
        ::lockstep_emu::profile_op(
            what, double(n) * (sizeof(K) + double((bits + 7) / 8) * 2 * (sizeof(K) + sizeof(V))), 0,
            'd');
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), size_t{0});
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return ((keys_in[a] >> begin_bit) & mask) < ((keys_in[b] >> begin_bit) & mask);
      });
      std::vector<K> keys(n);
      std::vector<V> values(n);
      for (size_t i = 0; i < n; ++i) {
        keys[i] = keys_in[order[i]];
        values[i] = values_in[order[i]];
      }
      std::copy(keys.begin(), keys.end(), keys_out);
      std::copy(values.begin(), values.end(), values_out);
    });
  }
};

struct DeviceRunLengthEncode {
  template <class K, class C, class R, class N>
  static cudaError_t Encode(void* temp, size_t& temp_bytes, const K* in, K* unique_out,
                            C* counts_out, R* num_runs_out, N num_items,
                            cudaStream_t stream = nullptr) {
    const auto n = static_cast<size_t>(num_items);
    constexpr const char* what = "cub::DeviceRunLengthEncode::Encode";
    if (detail_emu::query(temp, temp_bytes, detail_emu::temp_for(n, sizeof(C)), what))
      return cudaSuccess;
    ::lockstep_emu::require_device(in, n * sizeof(K), what);
    ::lockstep_emu::require_device(unique_out, n * sizeof(K), what);  // room for n runs
    ::lockstep_emu::require_device(counts_out, n * sizeof(C), what);
    ::lockstep_emu::require_device(num_runs_out, sizeof(R), what);
    return ::lockstep_emu::enqueue(stream, what, [=] {
      if (::lockstep_emu::g_profiling)
        ::lockstep_emu::profile_op(what, double(n) * (2 * sizeof(K) + sizeof(C)), 0, 'd');
      size_t runs = 0;
      for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && in[j] == in[i]) ++j;
        unique_out[runs] = in[i];
        counts_out[runs] = static_cast<C>(j - i);
        ++runs;
        i = j;
      }
      *num_runs_out = static_cast<R>(runs);
    });
  }
};

struct DeviceScan {
  template <class T, class N>
  static cudaError_t ExclusiveSum(void* temp, size_t& temp_bytes, const T* in, T* out, N num_items,
                                  cudaStream_t stream = nullptr) {
    const auto n = static_cast<size_t>(num_items);
    constexpr const char* what = "cub::DeviceScan::ExclusiveSum";
    if (detail_emu::query(temp, temp_bytes, detail_emu::temp_for(n / 32, sizeof(T)), what))
      return cudaSuccess;
    ::lockstep_emu::require_device(in, n * sizeof(T), what);
    ::lockstep_emu::require_device(out, n * sizeof(T), what);
    return ::lockstep_emu::enqueue(stream, what, [=] {
      if (::lockstep_emu::g_profiling)
        ::lockstep_emu::profile_op(what, double(n) * 2 * sizeof(T), 0, 'd');
      T sum{};
      for (size_t i = 0; i < n; ++i) {
        const T v = in[i];  // in may be out
        out[i] = sum;
        sum = sum + v;
      }
    });
  }
};

struct DeviceReduce {
  template <class T, class N>
  static cudaError_t Sum(void* temp, size_t& temp_bytes, const T* in, T* out, N num_items,
                         cudaStream_t stream = nullptr) {
    const auto n = static_cast<size_t>(num_items);
    constexpr const char* what = "cub::DeviceReduce::Sum";
    if (detail_emu::query(temp, temp_bytes, detail_emu::temp_for(n / 32, sizeof(T)), what))
      return cudaSuccess;
    ::lockstep_emu::require_device(in, n * sizeof(T), what);
    ::lockstep_emu::require_device(out, sizeof(T), what);
    return ::lockstep_emu::enqueue(stream, what, [=] {
      if (::lockstep_emu::g_profiling)
        ::lockstep_emu::profile_op(what, double(n) * sizeof(T), 0, 'd');
      *out = detail_emu::pairwise_sum(in, n);
    });
  }
};

}  // namespace cub

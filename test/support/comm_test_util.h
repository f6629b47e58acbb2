#pragma once
// Helpers shared by the multi-rank communicator tests (test/mpi, test/mpi_gpu): input data that
// every rank can compute for every other rank, the documented rank-order sum, and bitwise
// comparisons across ranks over raw MPI (not over the code under test).

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace lockstep::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Rank `rank`'s i-th input value: a pure function, so every rank can compute every rank's data.
/// Floats span many binary orders of magnitude so that a different summation order would change
/// the rounded result.
template <class T>
T value_for(uint64_t seed, int rank, int64_t i) {
  const uint64_t bits =
      splitmix64(seed ^ splitmix64(static_cast<uint64_t>(rank) << 40 ^ static_cast<uint64_t>(i)));
  if constexpr (std::is_floating_point_v<T>) {
    const double unit = static_cast<double>(bits >> 11) * 0x1.0p-53 * 2.0 - 1.0;  // [-1, 1)
    const int exponent = static_cast<int>(bits & 31) - 16;                        // [-16, 15]
    return static_cast<T>(std::ldexp(unit, exponent));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<int64_t>(bits % (uint64_t{1} << 41)) - (int64_t{1} << 40);
  } else {
    return static_cast<T>(bits);  // unsigned: full range, the sum wraps
  }
}

template <class T>
std::vector<T> inputs(uint64_t seed, int rank, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value_for<T>(seed, rank, i);
  return v;
}

/// The documented result: ((x0 + x1) + x2) + ... in rank order, in T's own arithmetic.
template <class T>
std::vector<T> rank_order_sum(uint64_t seed, int ranks, int64_t n) {
  std::vector<T> sum = inputs<T>(seed, 0, n);
  for (int r = 1; r < ranks; ++r)
    for (int64_t i = 0; i < n; ++i)
      sum[static_cast<size_t>(i)] =
          static_cast<T>(sum[static_cast<size_t>(i)] + value_for<T>(seed, r, i));
  return sum;
}

/// Index of the first element whose bits differ, or -1.
template <class T>
int64_t first_difference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<int64_t>(i);
  return -1;
}

/// FNV-1a over the bytes of v.
template <class T>
uint64_t hash_bytes(const std::vector<T>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/// True when every rank passed the same hash (compared over raw MPI, not the code under test).
inline bool same_on_every_rank(uint64_t hash) {
  std::vector<uint64_t> all(static_cast<size_t>(world_size()));
  MPI_Allgather(&hash, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (uint64_t h : all)
    if (h != all[0]) return false;
  return true;
}

}  // namespace lockstep::test

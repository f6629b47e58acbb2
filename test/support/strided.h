#pragma once
// Helpers for kernel tests on strided (row stride > width) data: random blocks with sentinel
// padding, the indices of the real elements, and checks that padding stays untouched.

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"

namespace lockstep::test {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kSentinel = -12345.0;  // marks stride padding that a kernel must not touch

/// Tolerance for a forward result of T against a long-double reference: a few roundings of T
/// per term of a short sum.
template <class T>
constexpr double fwd_tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

/// (rows, width) random values stored with row stride ld; the columns past width hold `pad`.
template <class T>
std::vector<T> strided_random(int64_t rows, int64_t width, int64_t ld, uint64_t seed,
                              double pad = kSentinel, double lo = -1.0, double hi = 1.0) {
  const auto dense = test::random_vector<double>(static_cast<size_t>(rows * width), seed, lo, hi);
  std::vector<T> v(static_cast<size_t>(rows * ld), static_cast<T>(pad));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) v[r * ld + c] = static_cast<T>(dense[r * width + c]);
  return v;
}

/// The flat indices r·ld + c of a (rows, width) block with row stride ld.
inline std::vector<int64_t> strided_indices(int64_t rows, int64_t width, int64_t ld) {
  std::vector<int64_t> idx;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) idx.push_back(r * ld + c);
  return idx;
}

/// Requires v[r·ld + c] to be exactly `pad` for every c in [width, ld) (stride padding untouched).
template <class T>
void require_padding_untouched(const std::vector<T>& v, int64_t rows, int64_t width, int64_t ld,
                               double pad, const std::string& what) {
  INFO(what);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = width; c < ld; ++c) {
      INFO("row " << r << " column " << c);
      REQUIRE(static_cast<double>(v[r * ld + c]) == pad);
    }
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// The (rows, width) block of a strided vector, contiguous.
template <class T>
std::vector<T> unstride(const std::vector<T>& v, int64_t rows, int64_t width, int64_t ld) {
  std::vector<T> out;
  out.reserve(static_cast<size_t>(rows * width));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) out.push_back(v[r * ld + c]);
  return out;
}

}  // namespace lockstep::test

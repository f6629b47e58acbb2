#pragma once
// Helpers shared by the unit and GPU tests.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/error.h"
#include "lockstep/core/tensor.h"

namespace lockstep::test {

/// The message of the lockstep::Error that `call` throws (the test fails when it throws none),
/// e.g. what a CPU reference says about input a CUDA kernel must reject the same way.
inline std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no lockstep::Error: the call accepted input it must reject");
  return {};
}

/// n values uniform in [lo, hi) from a fixed-seed generator.
template <class T = float>
std::vector<T> random_vector(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

/// Asserts |got - ref| <= atol + rtol * |ref| elementwise; on failure reports the worst
/// element, its index and the number of violations.
template <class T, class U>
void require_close(const std::vector<T>& got, const std::vector<U>& ref, double atol, double rtol,
                   const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == ref.size());
  size_t worst = 0, bad = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    const double err = std::abs(g - r), allowed = atol + rtol * std::abs(r);
    const bool ok = err <= allowed;  // false for NaN
    if (!ok) ++bad;
    const double excess = ok ? err - allowed : (std::isnan(err) ? 1e300 : err - allowed + 1e-300);
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (bad > 0) {
    FAIL(what << ": " << bad << " of " << got.size() << " elements out of tolerance (atol " << atol
              << ", rtol " << rtol << "); worst at index " << worst << ": got "
              << static_cast<double>(got[worst]) << ", expected "
              << static_cast<double>(ref[worst]));
  }
}

/// Asserts two vectors are identical bit for bit (reports the first difference).
template <class T>
void require_bitwise_equal(const std::vector<T>& a, const std::vector<T>& b,
                           const std::string& what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      FAIL(what << ": first difference at index " << i << ": " << static_cast<double>(a[i])
                << " vs " << static_cast<double>(b[i]));
    }
  }
}

/// True when at least one value differs from zero (guards tests against all-zero outputs).
template <class T>
bool any_nonzero(const std::vector<T>& v) {
  for (const auto& x : v)
    if (x != T(0)) return true;
  return false;
}

}  // namespace lockstep::test

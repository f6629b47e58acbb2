#pragma once
// Shared by the CUDA-vs-CPU parity tests of the sequence and interaction kernels (DIN unit,
// weighted sum, softmax, layer norm, dropout, strided batched GEMM, FM, cross network): tolerances, inputs with padded strides.
//
// Tolerances (|got − ref| <= atol + rtol |ref|): elementwise results rtol 1e-5; results that go
// through a GEMM or a reduction of `len` terms of magnitude <= 1 rtol 1e-4 with
// atol = 2e-5 · sqrt(len): such sums are of magnitude ~sqrt(len), and CPU and GPU add them in
// different orders.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gpu_util.h"
#include "sequence_lengths.h"

namespace lockstep::test::sequence_parity {

inline constexpr double kElemAtol = 1e-6, kElemRtol = 1e-5;
inline constexpr double kReduceRtol = 1e-4;
inline constexpr float kSentinel = -12345.0f;
inline constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();

/// atol for a sum of `len` terms of magnitude <= `magnitude`.
inline double reduce_atol(int64_t len, double magnitude = 1.0) {
  return 2e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(len, 1))) * magnitude;
}

/// (rows, width) random values with row stride ld; the columns past width hold `pad`.
inline std::vector<float> strided_random(int64_t rows, int64_t width, int64_t ld, uint64_t seed,
                                         float pad = kSentinel, double lo = -1.0, double hi = 1.0) {
  const auto dense = test::random_vector<float>(static_cast<size_t>(rows * width), seed, lo, hi);
  std::vector<float> v(static_cast<size_t>(rows * ld), pad);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) v[r * ld + c] = dense[r * width + c];
  return v;
}

inline std::vector<float> host(const Context& gpu, const Tensor<float>& t) {
  return to_host(gpu, t);
}

}  // namespace lockstep::test::sequence_parity

#pragma once
// Sequence lengths for the tests of the sequence kernels (unit and GPU).

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace lockstep::test {

/// Lengths for B samples of at most Tn positions: 0, 1, Tn, then random in [0, Tn]. A batch of
/// one sample gets the full length (so that its output is not trivially zero).
inline std::vector<int64_t> test_lengths(int64_t B, int64_t Tn, uint64_t seed) {
  if (B == 1) return {Tn};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, Tn);
  std::vector<int64_t> len(static_cast<size_t>(B));
  const int64_t fixed[3] = {0, std::min<int64_t>(1, Tn), Tn};
  for (int64_t b = 0; b < B; ++b) len[b] = b < 3 ? fixed[b] : dist(rng);
  return len;
}

}  // namespace lockstep::test

#pragma once
// Multi-hot batches in CSR form for the embedding tests (unit and GPU).

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace lockstep::test {

/// A batch of bags: bag b holds ids[offsets[b] .. offsets[b+1]-1].
struct CsrBatch {
  std::vector<int64_t> offsets{0};
  std::vector<uint64_t> ids;
  int64_t batch() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t nnz() const { return static_cast<int64_t>(ids.size()); }
  void add_bag(const std::vector<uint64_t>& bag) {
    ids.insert(ids.end(), bag.begin(), bag.end());
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
};

inline CsrBatch csr_from_bags(const std::vector<std::vector<uint64_t>>& bags) {
  CsrBatch csr;
  for (const auto& bag : bags) csr.add_bag(bag);
  return csr;
}

/// `batch` bags of min_len..max_len ids uniform in [0, rows), from a fixed seed. With
/// min_len == 0 and batch >= 3, bag 0 is always empty and bag 1 always repeats one id three
/// times, so that every such batch has both cases; smaller batches get non-empty bags only.
inline CsrBatch random_csr(int64_t batch, int64_t rows, int max_len, uint64_t seed,
                           int min_len = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> len_dist(min_len, max_len);
  std::uniform_int_distribution<uint64_t> id_dist(0, static_cast<uint64_t>(rows - 1));
  const bool special_bags = min_len == 0 && batch >= 3;
  CsrBatch csr;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<uint64_t> bag;
    if (special_bags && b == 0) {
      // empty
    } else if (special_bags && b == 1) {
      bag.assign(3, id_dist(rng));
    } else {
      const int len = special_bags ? len_dist(rng) : std::max(1, len_dist(rng));
      for (int j = 0; j < len; ++j) bag.push_back(id_dist(rng));
    }
    csr.add_bag(bag);
  }
  return csr;
}

}  // namespace lockstep::test

#include "train/host_collectives.h"

#include <algorithm>

namespace lockstep::train {

std::vector<double> HostCollectives::all_reduce_sum(std::vector<double> values) {
  upload(ctx_, values, scalars_);
  comm_.all_reduce_sum(ctx_, scalars_.data(), static_cast<int64_t>(values.size()),
                       comm::DataType::F64);
  return to_host(ctx_, scalars_);
}

std::vector<float> HostCollectives::all_gather(const std::vector<float>& mine) {
  const int ranks = size();
  std::vector<double> one_hot(ranks, 0.0);
  one_hot[rank()] = static_cast<double>(mine.size());
  const auto totals = all_reduce_sum(one_hot);
  std::vector<int64_t> counts(ranks);
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) total += counts[r] = static_cast<int64_t>(totals[r]);
  Tensor<float> send = make_tensor(ctx_, mine.empty() ? std::vector<float>{0.0f} : mine);
  Tensor<float> recv(ctx_, {std::max<int64_t>(total, 1)});
  comm_.all_gather_v(ctx_, send.data(), recv.data(), counts, comm::DataType::F32);
  return to_host(ctx_, recv.data(), total);
}

}  // namespace lockstep::train

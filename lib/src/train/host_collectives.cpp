#include "train/host_collectives.h"

#include <algorithm>

#include "lockstep/core/logging.h"

namespace lockstep::train {

std::vector<double> HostCollectives::all_reduce_sum(std::vector<double> values) {
  upload(ctx_, values, scalars_);
  comm_.all_reduce_sum(ctx_, scalars_.data(), static_cast<int64_t>(values.size()),
                       comm::DataType::F64);
  return to_host(ctx_, scalars_);
}

std::vector<float> HostCollectives::all_gather(const std::vector<float>& mine,
                                              std::vector<int64_t>* counts_out) {
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
  if (counts_out) *counts_out = counts;
  return to_host(ctx_, recv.data(), total);
}

void HostCollectives::vote(const std::string& phase, const std::string& error) {
  constexpr size_t kMaxMessage = 2000;  // characters of each rank's message that travel
  if (!error.empty()) log().error("rank {}: {}", rank(), error);
  std::vector<float> mine;
  for (size_t i = 0; i < std::min(error.size(), kMaxMessage); ++i)
    mine.push_back(static_cast<float>(static_cast<unsigned char>(error[i])));  // exact in float
  std::vector<int64_t> counts;
  const auto all = all_gather(mine, &counts);
  std::vector<int> failed;
  std::string messages;
  int64_t at = 0;
  for (int r = 0; r < size(); ++r) {
    if (counts[r] > 0) {
      std::string m;
      for (int64_t i = 0; i < counts[r]; ++i) m += static_cast<char>(static_cast<int>(all[at + i]));
      failed.push_back(r);
      messages += fmt::format("{}rank {}: {}", messages.empty() ? "" : " | ", r, m);
    }
    at += counts[r];
  }
  LOCKSTEP_CHECK(failed.empty(), "{} failed on rank(s) {}: {}", phase, fmt::join(failed, ", "),
                 messages);
}

}  // namespace lockstep::train

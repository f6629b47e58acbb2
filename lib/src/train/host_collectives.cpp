#include "train/host_collectives.h"

#include <algorithm>

#include "lockstep/core/logging.h"
#include "train/control_block.h"

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

std::vector<uint64_t> HostCollectives::all_gather_u64(const std::vector<uint64_t>& mine) {
  const size_t k = mine.size();
  std::vector<double> slots(static_cast<size_t>(size()) * k * 4, 0.0);
  for (size_t i = 0; i < k; ++i) put_u64_chunks(mine[i], &slots[(rank() * k + i) * 4]);
  const auto all = all_reduce_sum(slots);
  std::vector<uint64_t> out(static_cast<size_t>(size()) * k);
  for (size_t j = 0; j < out.size(); ++j)
    LOCKSTEP_CHECK(get_u64_chunks(&all[j * 4], out[j]),
                   "value {} of rank {} arrived corrupted (ranks built from different versions?)",
                   j % k, j / k);
  return out;
}

std::vector<std::string> HostCollectives::all_gather_text(const std::string& mine,
                                                          size_t max_chars) {
  std::vector<float> codes;
  for (size_t i = 0; i < std::min(mine.size(), max_chars); ++i)
    codes.push_back(static_cast<float>(static_cast<unsigned char>(mine[i])));  // exact in float
  std::vector<int64_t> counts;
  const auto all = all_gather(codes, &counts);
  std::vector<std::string> out(static_cast<size_t>(size()));
  int64_t at = 0;
  for (int r = 0; r < size(); ++r)
    for (int64_t i = 0; i < counts[r]; ++i)
      out[r] += static_cast<char>(static_cast<int>(all[at++]));
  return out;
}

void HostCollectives::vote(const std::string& phase, const std::string& error, bool log_error) {
  // At once, before the collective (alone, a rank's error is the vote's message: said once).
  if (!error.empty() && log_error && size() > 1) log().error("rank {}: {}", rank(), error);
  const auto all = all_gather_text(error, 2000);  // characters of each rank's message that travel
  std::vector<int> failed;
  std::string messages;
  for (int r = 0; r < size(); ++r) {
    if (all[r].empty()) continue;
    failed.push_back(r);
    messages += fmt::format("{}rank {}: {}", messages.empty() ? "" : " | ", r, all[r]);
  }
  if (!failed.empty())
    throw JobError(fmt::format("{} failed on rank(s) {}: {}", phase, fmt::join(failed, ", "),
                               messages));
}

}  // namespace lockstep::train

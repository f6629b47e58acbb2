#include "train/control_block.h"

#include <algorithm>
#include <cmath>

#include "lockstep/core/error.h"

namespace lockstep::train {

namespace {
// Slot layout (floats): step[4] n_samples[4] has_next status stop loss_hi loss_lo rows[4 × tables]
constexpr int kStep = 0, kSamples = 4, kHasNext = 8, kStatus = 9, kStop = 10, kLossHi = 11,
              kLossLo = 12, kRows = 13;
constexpr int kChunks = 4;  // 16-bit chunks per 64-bit integer

uint64_t get_u64(const float* in, const char* field, int rank) {
  uint64_t v = 0;
  if (get_u64_chunks(in, v)) return v;
  for (int i = 0; i < kChunks; ++i)
    LOCKSTEP_CHECK(in[i] >= 0.0f && in[i] <= 65535.0f && std::floor(in[i]) == in[i],
                   "control block: field '{}' of rank {} holds {} in chunk {}, not a 16-bit "
                   "integer (ranks with different layouts, or corrupted data)",
                   field, rank, in[i], i);
  return v;
}

float get_small(float v, float max, const char* field, int rank) {
  LOCKSTEP_CHECK(v >= 0.0f && v <= max && std::floor(v) == v,
                 "control block: field '{}' of rank {} holds {}, expected an integer in [0, {}]",
                 field, rank, v, max);
  return v;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}
}  // namespace

const char* status_name(uint16_t status) {
  switch (status) {
    case kStatusOk: return "ok";
    case kStatusComputeFailed: return "forward/backward failed";
    case kStatusDataFailed: return "reading the next batch failed";
    case kStatusCheckpointFailed: return "writing a checkpoint failed";
    case kStatusStageFailed: return "staging the batch failed";
    case kStatusDeviceInputFailed: return "a CUDA kernel found invalid input";
    case kStatusInjected: return "injected test fault";
  }
  return "unknown failure";
}

ControlBlock::ControlBlock(int ranks, int tables) : ranks_(ranks), tables_(tables) {
  LOCKSTEP_ASSERT(ranks >= 1 && tables >= 0);
}

int64_t ControlBlock::slot_size() const { return kRows + kChunks * tables_; }
int64_t ControlBlock::loss_index(int rank) const { return rank * slot_size() + kLossHi; }
int64_t ControlBlock::status_index(int rank) const { return rank * slot_size() + kStatus; }
int64_t ControlBlock::rows_index(int rank, int table) const {
  return rank * slot_size() + kRows + kChunks * table;
}

void ControlBlock::encode(const RankReport& r, int rank, float* block) const {
  LOCKSTEP_ASSERT(rank >= 0 && rank < ranks_);
  LOCKSTEP_ASSERT(static_cast<int>(r.sparse_rows.size()) == tables_);
  float* slot = block + rank * slot_size();
  put_u64_chunks(r.step, slot + kStep);
  put_u64_chunks(r.n_samples, slot + kSamples);
  slot[kHasNext] = r.has_next ? 1.0f : 0.0f;
  slot[kStatus] = static_cast<float>(r.status);
  slot[kStop] = r.stop_requested ? 1.0f : 0.0f;
  const float hi = static_cast<float>(r.loss_sum);
  slot[kLossHi] = hi;
  slot[kLossLo] = static_cast<float>(r.loss_sum - static_cast<double>(hi));
  for (int t = 0; t < tables_; ++t) put_u64_chunks(r.sparse_rows[t], slot + kRows + kChunks * t);
}

std::vector<RankReport> ControlBlock::decode(const float* block) const {
  std::vector<RankReport> out;
  decode(block, out);
  return out;
}

void ControlBlock::decode(const float* block, std::vector<RankReport>& out) const {
  out.resize(static_cast<size_t>(ranks_));
  for (int rank = 0; rank < ranks_; ++rank) {
    const float* slot = block + rank * slot_size();
    RankReport& r = out[rank];
    r.step = get_u64(slot + kStep, "step", rank);
    r.n_samples = get_u64(slot + kSamples, "n_samples", rank);
    r.has_next = get_small(slot[kHasNext], 1, "has_next", rank) != 0.0f;
    r.status = static_cast<uint16_t>(get_small(slot[kStatus], 65535, "status", rank));
    r.stop_requested = get_small(slot[kStop], 1, "stop_requested", rank) != 0.0f;
    r.loss_sum = static_cast<double>(slot[kLossHi]) + static_cast<double>(slot[kLossLo]);
    r.sparse_rows.resize(static_cast<size_t>(tables_));
    for (int t = 0; t < tables_; ++t)
      r.sparse_rows[t] = get_u64(slot + kRows + kChunks * t, "sparse_rows", rank);
  }
}

StepSummary summarize(const std::vector<RankReport>& reports, uint64_t expected_step) {
  StepSummary s;
  summarize(reports, expected_step, s);
  return s;
}

void summarize(const std::vector<RankReport>& reports, uint64_t expected_step, StepSummary& s) {
  const bool all_well = std::all_of(reports.begin(), reports.end(), [&](const RankReport& r) {
    return r.status == kStatusOk && r.step == expected_step;
  });
  std::vector<int> failed, off_step, on_step;  // only when something is wrong
  for (size_t r = 0; r < reports.size() && !all_well; ++r) {
    if (reports[r].status != kStatusOk) failed.push_back(static_cast<int>(r));
    (reports[r].step == expected_step ? on_step : off_step).push_back(static_cast<int>(r));
  }
  if (!failed.empty()) {
    std::string what;
    for (int r : failed)
      what += fmt::format("{}rank {} ({})", what.empty() ? "" : "; ", r,
                          status_name(reports[r].status));
    throw JobError(fmt::format("lockstep step {} failed on {}: see that rank's log for the error; "
                            "every rank stops here",
                            expected_step, what));
  }
  if (!off_step.empty()) {
    std::string what;
    for (int r : off_step)
      what += fmt::format("{}rank {} is at step {}", what.empty() ? "" : ", ", r, reports[r].step);
    throw JobError(fmt::format("lockstep divergence at step {}: {} (rank(s) {} at step {}); the "
                            "replicas no longer run the same step, every rank stops here",
                            expected_step, what, rank_list(on_step), expected_step));
  }
  s.step = expected_step;
  s.samples = 0;
  s.loss_sum = 0.0;
  s.any_next = false;
  s.stop_requested = false;
  s.sparse_rows.clear();
  for (const auto& r : reports) {
    s.samples += r.n_samples;
    s.loss_sum += r.loss_sum;
    s.any_next = s.any_next || r.has_next;
    s.stop_requested = s.stop_requested || r.stop_requested;
    s.sparse_rows.insert(s.sparse_rows.end(), r.sparse_rows.begin(), r.sparse_rows.end());
  }
}

}  // namespace lockstep::train

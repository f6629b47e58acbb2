#include "train/fault_injection.h"

#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"
#include "train/signals.h"

namespace lockstep::train {

FaultInjection FaultInjection::parse(const std::string& spec) {
  FaultInjection f;
  if (spec.empty() || spec == "none") return f;
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  const std::string usage =
      "use kind:rank:step[:seconds] with kind skew, fail, sleep, kill, sigterm, error or device, "
      "e.g. sleep:1:5:30";
  LOCKSTEP_CHECK(parts.size() >= 3 && parts.size() <= 4, "--inject-fault = '{}': {}", spec, usage);
  const std::string& kind = parts[0];
  if (kind == "skew") f.kind = Kind::StepSkew;
  else if (kind == "fail") f.kind = Kind::Fail;
  else if (kind == "sleep") f.kind = Kind::Sleep;
  else if (kind == "kill") f.kind = Kind::Kill;
  else if (kind == "sigterm") f.kind = Kind::Signal;
  else if (kind == "error") f.kind = Kind::Error;
  else if (kind == "device") f.kind = Kind::DeviceLost;
  else throw Error(fmt::format("--inject-fault = '{}': unknown kind '{}': {}", spec, kind, usage));
  try {
    f.rank = std::stoi(parts[1]);
    f.step = std::stoull(parts[2]);
    if (parts.size() == 4) f.seconds = std::stod(parts[3]);
  } catch (const std::exception&) {
    throw Error(fmt::format("--inject-fault = '{}': rank, step and seconds must be numbers: {}",
                            spec, usage));
  }
  LOCKSTEP_CHECK(f.kind != Kind::Sleep || parts.size() == 4,
                 "--inject-fault = '{}': sleep needs seconds: {}", spec, usage);
  return f;
}

void FaultInjection::apply(RankReport& report, int my_rank, uint64_t at_step) const {
  if (kind == Kind::None || rank != my_rank || step != at_step) return;
  switch (kind) {
    case Kind::StepSkew: report.step += 1; break;
    case Kind::Fail: report.status = kStatusInjected; break;
    case Kind::Sleep:
      log().warn("fault injection: rank {} sleeps {} s at step {}", rank, seconds, step);
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      break;
    case Kind::Kill:
      log().warn("fault injection: rank {} kills itself at step {}", rank, step);
      std::raise(SIGKILL);
      break;
    case Kind::Signal:
      std::raise(SIGTERM);  // as if delivered now: this step's report carries the request
      report.stop_requested = stop_signal_pending();
      break;
    default: break;
  }
}

void FaultInjection::raise_in_compute(int my_rank, uint64_t at_step) const {
  if (rank != my_rank || step != at_step) return;
  if (kind == Kind::Error)
    throw lockstep::Error(fmt::format("injected error (rank {}, step {})", rank, step));
  if (kind == Kind::DeviceLost)
    throw DeviceError(fmt::format("injected device failure (rank {}, step {}): the device is "
                                  "unusable for the rest of this process",
                                  rank, step));
}

namespace testing {
namespace {
FaultInjection g_fault;
}
FaultScope::FaultScope(FaultInjection fault) { g_fault = fault; }
FaultScope::~FaultScope() { g_fault = FaultInjection{}; }
FaultInjection current_fault() { return g_fault; }
}  // namespace testing

}  // namespace lockstep::train

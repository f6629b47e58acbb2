#pragma once
// Internal test hook (not installed): faults injected on purpose into the lockstep step, for the
// fault-tolerance tests and `lockstep-train --inject-fault`.

#include <cstdint>
#include <string>

#include "train/control_block.h"

namespace lockstep::train {

struct FaultInjection {
  enum class Kind { None, StepSkew, Fail, Sleep, Kill, Signal, Error, DeviceLost };
  Kind kind = Kind::None;
  int rank = 0;
  uint64_t step = 0;
  double seconds = 0;  // Sleep
  /// Parses "skew:1:5" (rank 1 reports step 6 at step 5), "fail:1:5" (rank 1 reports a failure
  /// status), "sleep:1:5:30" (rank 1 sleeps 30 s before the collective), "kill:1:5" (rank 1
  /// SIGKILLs itself), "sigterm:1:5" (rank 1 SIGTERMs itself), "error:1:5" (rank 1's forward
  /// throws a lockstep::Error), "device:1:5" (it throws a DeviceError, as after a sticky CUDA
  /// error). Throws Error naming the flag.
  static FaultInjection parse(const std::string& spec);

  /// Applies the fault to `report` when it is due at (rank, step); a no-op otherwise.
  void apply(RankReport& report, int rank, uint64_t step) const;
  /// Throws the Error or DeviceError of kinds Error and DeviceLost when due (called where the
  /// step computes); a no-op otherwise.
  void raise_in_compute(int rank, uint64_t step) const;
};

namespace testing {
/// The fault every Trainer constructed while this scope is alive injects (one at a time;
/// scopes do not nest).
class FaultScope {
 public:
  explicit FaultScope(FaultInjection fault);
  explicit FaultScope(const std::string& spec) : FaultScope(FaultInjection::parse(spec)) {}
  ~FaultScope();
  FaultScope(const FaultScope&) = delete;
  FaultScope& operator=(const FaultScope&) = delete;
};
/// The fault of the live FaultScope (Kind::None without one).
FaultInjection current_fault();
}  // namespace testing

}  // namespace lockstep::train

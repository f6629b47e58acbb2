#pragma once
// Internal: SIGTERM/SIGINT during fit() become a collective "checkpoint and stop" request.

#include <csignal>

namespace lockstep::train {

/// While alive (and when `install`), SIGTERM and SIGINT only set a flag (stop_signal_pending());
/// the previous handlers are restored on destruction. Guards nest: the flag is cleared when the
/// outermost one is created and destroyed, so a signal seen by an inner guard (a fit()) is still
/// pending for the loop around it (lockstep-train --follow).
class SignalGuard {
 public:
  explicit SignalGuard(bool install);
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  bool installed_;
  struct sigaction old_term_ {}, old_int_ {};
};

/// True when a stop signal arrived since the current SignalGuard was installed.
bool stop_signal_pending();

}  // namespace lockstep::train

#pragma once
// Internal: the deadline of a communicator wait and the back-off used while polling.

#include <algorithm>
#include <chrono>
#include <thread>

namespace lockstep::comm::detail {

using Clock = std::chrono::steady_clock;

/// The end of a wait that may last at most `seconds`, counted from construction.
class Deadline {
 public:
  explicit Deadline(double seconds)
      : seconds_(seconds),
        start_(Clock::now()),
        end_(start_ +
             std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))) {}

  bool expired() const { return Clock::now() >= end_; }
  /// The timeout this deadline was made with, in seconds.
  double seconds() const { return seconds_; }
  /// Seconds since construction.
  double elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  double seconds_;
  Clock::time_point start_, end_;
};

/// Pauses between polls: spins for the first millisecond (a collective about to finish is not
/// delayed by a sleep), then sleeps 50 µs, doubling up to 200 µs, so that ranks sharing cores
/// (oversubscribed runs) leave the CPU to the peers they are waiting for.
class Backoff {
 public:
  void pause() {
    if (!sleeping_) {
      sleeping_ = Clock::now() - start_ >= std::chrono::milliseconds(1);
      if (!sleeping_) return;
    }
    std::this_thread::sleep_for(sleep_);
    sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(200));
  }
  /// True once the spinning phase is over (the wait is no longer short).
  bool sleeping() const { return sleeping_; }

 private:
  Clock::time_point start_ = Clock::now();
  std::chrono::microseconds sleep_{50};
  bool sleeping_ = false;
};

}  // namespace lockstep::comm::detail

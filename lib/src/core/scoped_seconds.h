#pragma once
// Internal: adds the wall time of a scope to a running total (time spent waiting for data).

#include <chrono>

namespace lockstep {

class ScopedSeconds {
 public:
  explicit ScopedSeconds(double& total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  ~ScopedSeconds() {
    total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  ScopedSeconds(const ScopedSeconds&) = delete;
  ScopedSeconds& operator=(const ScopedSeconds&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace lockstep

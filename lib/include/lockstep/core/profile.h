#pragma once
// Where a training step's time goes (issue 14): a Profile attached to a Context
// (Context::set_profile) collects the wall time of the step's phases (ProfilePhase scopes:
// staging, forward, backward, all-reduce, sparse exchange, optimizer, data wait) and of every
// kernel launched through a dispatcher (kernels/common.h), per name. With no Profile attached a
// scope costs one pointer test.
//
// On CUDA each measured scope synchronises the context's stream when it starts and when it ends,
// so a time is the device's work in that scope plus its launches; a profiled CUDA step is slower
// than an unprofiled one (no overlap), and the profile says where the work is, not how it
// overlaps. Kernel scopes nest: only the outermost kernel is counted (a dispatcher built from
// other dispatchers counts once). A Profile is used by one thread (the context's).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/core/context.h"

namespace lockstep {

class Profile {
 public:
  struct Entry {
    std::string name;
    double seconds = 0;
    int64_t calls = 0;
  };
  const std::vector<Entry>& phases() const { return phases_; }
  const std::vector<Entry>& kernels() const { return kernels_; }
  void add_phase(const char* name, double seconds) { add(phases_, name, seconds); }
  void add_kernel(const char* name, double seconds) { add(kernels_, name, seconds); }
  void reset() { *this = Profile{}; }

  /// A table of both, per step (`steps` > 0): phases in order of first use, then the kernels
  /// that took the most time (at most `top`), each with ms per step, calls per step and its
  /// share of the phases' sum.
  std::string table(int64_t steps, size_t top = 25) const;

  int kernel_depth = 0;  // the open kernel scopes (internal)

 private:
  static void add(std::vector<Entry>& list, const char* name, double seconds);
  std::vector<Entry> phases_, kernels_;
};

/// Times a scope into ctx's Profile, if one is attached.
class ProfileScope {
 public:
  enum class Kind { Phase, Kernel };
  ProfileScope(const Context& ctx, const char* name, Kind kind) {
    if (ctx.profile() != nullptr) start(ctx, name, kind);
  }
  ~ProfileScope() {
    if (profile_ != nullptr) stop();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  void start(const Context& ctx, const char* name, Kind kind);
  void stop();
  const Context* ctx_ = nullptr;
  Profile* profile_ = nullptr;
  const char* name_ = nullptr;
  bool counted_ = false;
  Kind kind_ = Kind::Phase;
  std::chrono::steady_clock::time_point t0_;
};

/// A phase of the step: ProfilePhase p(ctx, "forward");
class ProfilePhase : public ProfileScope {
 public:
  ProfilePhase(const Context& ctx, const char* name) : ProfileScope(ctx, name, Kind::Phase) {}
};

/// Attaches `profile` (nullptr: none) to ctx for a scope, and the previous one again after it.
class ScopedProfile {
 public:
  ScopedProfile(Context& ctx, Profile* profile) : ctx_(ctx), previous_(ctx.profile()) {
    ctx.set_profile(profile);
  }
  ~ScopedProfile() { ctx_.set_profile(previous_); }
  ScopedProfile(const ScopedProfile&) = delete;
  ScopedProfile& operator=(const ScopedProfile&) = delete;

 private:
  Context& ctx_;
  Profile* previous_;
};

}  // namespace lockstep

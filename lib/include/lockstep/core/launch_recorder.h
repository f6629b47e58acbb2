#pragma once
// LaunchRecorder: sees every kernel launch and device copy a Context makes while it is attached
// (Context::set_recorder), so that a region of work can be logged, kept and replayed as a
// graph (train/step_graphs.h: the training step's forward and backward as a CUDA graph).
//
// The kernel dispatchers (kernels/common.h) and copy_bytes/zero_bytes hand each launch to
// launch(): its op and its arguments, converted to the implementation's parameter types and
// hashed, are appended to log(); then, by mode(), the launch runs now (Run; Capture on CUDA,
// where the capturing stream records it), is kept to run later (Capture on the CPU, which has
// no stream to capture: take_kept() hands them over, in order) or is only logged (Skip:
// the host pass of a replay, whose device work the graph does). Two runs of a region that log
// the same hashes launched the same ops with the same arguments, in the same order: what makes
// replaying a graph captured from one of them correct for the other.
// A launch made inside another (a kernel built from kernels) runs as part of the outer one.

#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace lockstep {

class Context;

class LaunchRecorder {
 public:
  enum class Mode { Run, Capture, Skip };

  Mode mode() const { return mode_; }
  void set_mode(Mode mode) { mode_ = mode; }

  /// The launches since clear(), one hash each, and their ops (a copy: "copy", a byte fill:
  /// "fill_bytes").
  const std::vector<uint64_t>& log() const { return log_; }
  const std::vector<const char*>& ops() const { return ops_; }
  /// Why the work since clear() cannot be replayed from a graph (nullptr: it can).
  const char* uncapturable() const { return uncapturable_; }
  /// Something a graph cannot hold happened (a copy between host and device memory, a read of
  /// device memory on the host): the first reason is kept.
  void mark_uncapturable(const char* why) {
    if (uncapturable_ == nullptr) uncapturable_ = why;
  }
  /// Empties the log, the reason and the kept launches (their capacity is kept).
  void clear() {
    log_.clear();
    ops_.clear();
    kept_.clear();
    uncapturable_ = nullptr;
  }
  /// Moves the launches kept in Capture mode on the CPU out, in order (a CPU graph).
  std::vector<std::function<void()>> take_kept() { return std::move(kept_); }

  /// One launch of the implementation `fn` of `op` with `args` (see the top of this file).
  template <class... P, class... A>
  void launch(const Context& ctx, bool cpu, const char* op, void (*fn)(const Context&, P...),
              A&&... args) {
    if (depth_ > 0) {  // inside another launch: part of it
      fn(ctx, std::forward<A>(args)...);
      return;
    }
    std::tuple<std::decay_t<P>...> values(std::forward<A>(args)...);
    uint64_t h = mix(kSeed, reinterpret_cast<uintptr_t>(op));
    std::apply([&](const auto&... v) { ((h = mix(h, bits_of(v))), ...); }, values);
    log_.push_back(h);
    ops_.push_back(op);
    if (mode_ == Mode::Skip) return;
    if (mode_ == Mode::Capture && cpu) {
      kept_.emplace_back(
          [&ctx, fn, values] { std::apply([&](const auto&... v) { fn(ctx, v...); }, values); });
      return;
    }
    const Nested nested(depth_);
    std::apply([&](const auto&... v) { fn(ctx, v...); }, values);
  }

  /// One launch of device work that is not a kernel (a copy, a fill): `op`, with `key` (its
  /// pointers and sizes, hashed), done by `work`.
  template <class F>
  void launch_work(bool cpu, const char* op, uint64_t key, F&& work) {
    if (depth_ > 0) {
      work();
      return;
    }
    log_.push_back(mix(kSeed, key));
    ops_.push_back(op);
    if (mode_ == Mode::Skip) return;
    if (mode_ == Mode::Capture && cpu) {
      kept_.emplace_back(std::forward<F>(work));
      return;
    }
    const Nested nested(depth_);
    work();
  }

  /// The hash of a struct argument's fields: a struct passed to a kernel declares
  /// `uint64_t launch_hash(const S& s) { return LaunchRecorder::hash_fields(s.a, s.b); }` next
  /// to it (found by argument-dependent lookup).
  template <class... V>
  static uint64_t hash_fields(const V&... v) {
    uint64_t h = kSeed;
    ((h = mix(h, bits_of(v))), ...);
    return h;
  }

  static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
  }

 private:
  static constexpr uint64_t kSeed = 0x6c6f636b73746570ull;  // "lockstep"
  struct Nested {
    explicit Nested(int& d) : depth(d) { ++depth; }
    ~Nested() { --depth; }
    int& depth;
  };
  // Kernel arguments are sizes, scalars, enums and pointers, hashed by value (a float by its
  // bits), or structs with a launch_hash() (hash_fields).
  template <class V>
  static uint64_t bits_of(const V& v) {
    static_assert(std::is_arithmetic_v<V> || std::is_enum_v<V> || std::is_pointer_v<V> ||
                      std::is_null_pointer_v<V> || std::is_class_v<V>,
                  "LaunchRecorder hashes scalar, enum, pointer and struct arguments only");
    if constexpr (std::is_class_v<V>) {
      return launch_hash(v);
    } else if constexpr (std::is_pointer_v<V>) {
      return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(v));
    } else if constexpr (std::is_null_pointer_v<V>) {
      return 0;
    } else if constexpr (std::is_same_v<V, bool>) {
      return v ? 1 : 0;
    } else {
      uint64_t out = 0;
      std::memcpy(&out, &v, sizeof(V) < sizeof(out) ? sizeof(V) : sizeof(out));
      return out;
    }
  }

  Mode mode_ = Mode::Run;
  int depth_ = 0;
  std::vector<uint64_t> log_;
  std::vector<const char*> ops_;
  std::vector<std::function<void()>> kept_;
  const char* uncapturable_ = nullptr;
};

}  // namespace lockstep

#pragma once
// Internal: the training step's forward and backward as a CUDA graph, per batch shape.
//
// A region of device work (LocalTrainer::compute_gradients) is run through a LaunchRecorder
// (lockstep/core/launch_recorder.h), keyed by what the caller knows shapes it (the staged
// batch, its size, every table's staged id count):
//   while a key's runs log different launches: run at once, logged (kernels, arguments,
//                            copies), e.g. the first run, or the steps of a warm-up whose weight
//                            is a kernel argument;
//   once two runs logged the same launches: the next is captured (CUDA: the stream records it;
//                            CPU: the launches are kept) and the graph launched; it is kept when
//                            the capture logged those launches again;
//   after that:              a host pass runs the region's host code with every launch skipped
//                            but logged (host-side state stays what eager execution leaves), and
//                            when its log equals the graph's, the graph is launched instead: one
//                            launch for hundreds of kernels.
// A log that differs (the key missed something that changes a launch), an allocation since the
// capture (the workspace may have moved) or a failed capture makes the step run eagerly and the
// key start over. Work a graph cannot hold (a host read, a copy from host memory, a wait for
// another stream) keeps the key eager. Random draws (dropout) are graphed: the region takes its
// counters relative to a base in device memory (Context::reserve_random_counters), which run()
// sets to the step's offset before the region, so a replay draws the numbers an eager step
// would. So a replay always does exactly what launching every kernel would: the same bits.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/launch_recorder.h"
#include "lockstep/train/local_trainer.h"

namespace lockstep::train {

/// A non-owning reference to the region's callable (no allocation per step, unlike
/// std::function for a lambda capturing more than two pointers).
class RegionRef {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_const_t<F>, RegionRef>>>
  RegionRef(F& f)  // NOLINT(google-explicit-constructor): passed where a callable is expected
      : object_(&f), call_([](const void* o) -> const void* {
          return (*static_cast<F*>(const_cast<void*>(o)))();
        }) {}
  const void* operator()() const { return call_(object_); }

 private:
  const void* object_;
  const void* (*call_)(const void*);
};

class StepGraphs {
 public:
  explicit StepGraphs(const Context& ctx);
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  /// Runs `region` (which enqueues device work on the context and returns a pointer to its
  /// result) for a batch shaped by `key`, as described above; returns what region returned.
  const void* run(const std::vector<int64_t>& key, RegionRef region);

  /// Drops every graph (they are rebuilt on demand).
  void clear();
  const GraphStats& stats() const { return stats_; }

 private:
  struct Graph;
  Graph* find(const std::vector<int64_t>& key);
  Graph& insert(const std::vector<int64_t>& key);
  const void* record(Graph& g, RegionRef region);
  const void* capture(Graph& g, RegionRef region);
  const void* replay(Graph& g, RegionRef region);
  const void* again(Graph& g, RegionRef region, const std::string& why);
  void remember(Graph& g, const void* result);
  void launch(const Graph& g);
  void release(Graph& g);
  std::string difference(const Graph& g) const;
  void disable(const std::string& why);

  const Context& ctx_;
  LaunchRecorder recorder_;
  std::vector<std::unique_ptr<Graph>> graphs_;
  uint64_t uses_ = 0;      // for least-recently-used eviction
  bool disabled_ = false;  // a capture failed on this device: everything runs eagerly
  GraphStats stats_;
};

}  // namespace lockstep::train

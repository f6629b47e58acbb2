#include "train/step_graphs.h"

#include <algorithm>
#include <exception>

#include "core/buffer_frees.h"
#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep::train {

namespace {
// Graphs kept at once: a few batch shapes (id counts in padded steps, the epoch's last batch),
// times the staging slots a batch can be in.
constexpr size_t kMaxGraphs = 16;

// Attaches the recorder to the context for one pass of the region, emptied and in `mode`.
class Attached {
 public:
  Attached(const Context& ctx, LaunchRecorder& recorder, LaunchRecorder::Mode mode) : ctx_(ctx) {
    recorder.clear();
    recorder.set_mode(mode);
    ctx.set_recorder(&recorder);
  }
  ~Attached() { ctx_.set_recorder(nullptr); }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;

 private:
  const Context& ctx_;
};
}  // namespace

struct StepGraphs::Graph {
  enum class State {
    New,     // never run
    Seen,    // run eagerly and logged; captured once a run logs the same launches again
    Stable,  // two runs logged the same launches: the next one is captured
    Kept,    // captured: replayed whenever the host pass logs the same launches
    Eager,   // runs eagerly from now on: a graph cannot hold it (uncapturable())
  };
  std::vector<int64_t> key;
  State state = State::New;
  std::vector<uint64_t> log;  // the launches of its last logged run, or of its graph
  std::vector<const char*> ops;
  const void* result = nullptr;
  uint64_t draws = 0;        // random counters it reserves (Context::reserve_random_counters)
  uint64_t allocations = 0;  // the context's allocations when captured
  uint64_t last_use = 0;
  void* exec = nullptr;                     // cudaGraphExec_t
  std::vector<std::function<void()>> kept;  // a CPU "graph": the kept launches
};

StepGraphs::StepGraphs(const Context& ctx) : ctx_(ctx) {}

StepGraphs::~StepGraphs() { clear(); }

void StepGraphs::clear() {
  for (auto& g : graphs_) release(*g);
  graphs_.clear();
}

// A graph still running on the stream is freed by CUDA when it completes.
void StepGraphs::release(Graph& g) {
#if LOCKSTEP_CUDA_ENABLED
  if (g.exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
#endif
  g.exec = nullptr;
  g.kept.clear();
}

StepGraphs::Graph* StepGraphs::find(const std::vector<int64_t>& key) {
  for (auto& g : graphs_)
    if (g->key == key) return g.get();
  return nullptr;
}

StepGraphs::Graph& StepGraphs::insert(const std::vector<int64_t>& key) {
  if (graphs_.size() >= kMaxGraphs) {  // forget the least recently used
    auto oldest =
        std::min_element(graphs_.begin(), graphs_.end(),
                         [](const auto& a, const auto& b) { return a->last_use < b->last_use; });
    release(**oldest);
    graphs_.erase(oldest);
  }
  graphs_.push_back(std::make_unique<Graph>());
  graphs_.back()->key = key;
  return *graphs_.back();
}

// Where the last pass's launches differ from the graph's (for the log).
std::string StepGraphs::difference(const Graph& g) const {
  const auto& log = recorder_.log();
  const auto& ops = recorder_.ops();
  if (recorder_.uncapturable() != nullptr) return recorder_.uncapturable();
  const size_t n = std::min(log.size(), g.log.size());
  for (size_t i = 0; i < n; ++i)
    if (log[i] != g.log[i])
      return fmt::format("launch {} of the step ({}) differs from the graph's ({})", i, ops[i],
                         g.ops[i]);
  if (log.size() != g.log.size())
    return fmt::format("the step made {} launches, the graph holds {}", log.size(), g.log.size());
  return "its result, random draws, allocations or frees differ from the graph's";
}

void StepGraphs::disable(const std::string& why) {
  if (!disabled_) log().warn("CUDA graphs off for this run: {}", why);
  disabled_ = true;
  clear();
}

const void* StepGraphs::run(const std::vector<int64_t>& key, RegionRef region) {
  // A profile times every phase with a synchronisation, which a graph would skip.
  if (disabled_ || ctx_.profile() != nullptr) {
    ++stats_.eager;
    return region();
  }
  // The random stream's device base at this step's offset (before the region: a launch whose
  // argument changes every step), so that the region's draws have the same arguments each time.
  ctx_.sync_random_base();
  Graph* g = find(key);
  if (g == nullptr) g = &insert(key);
  g->last_use = ++uses_;
  switch (g->state) {
    case Graph::State::New:
    case Graph::State::Seen:
      return record(*g, region);
    case Graph::State::Stable:
      return capture(*g, region);
    case Graph::State::Kept:
      return replay(*g, region);
    case Graph::State::Eager:
      break;
  }
  ++stats_.eager;
  return region();
}

// An eager run, logged: the key becomes Stable when it logged what its last run did (arguments
// that change step after step, such as a warm-up's weight, keep it eager until they settle).
const void* StepGraphs::record(Graph& g, RegionRef region) {
  const uint64_t random = ctx_.random_offset();
  const void* result = nullptr;
  {
    const Attached attached(ctx_, recorder_, LaunchRecorder::Mode::Run);
    result = region();
  }
  ++stats_.eager;
  const uint64_t draws = ctx_.random_offset() - random;
  const char* why = recorder_.uncapturable();
  if (why != nullptr) {
    if (stats_.not_capturable++ == 0) log().info("the training step runs without a graph: {}", why);
    g.state = Graph::State::Eager;
    return result;
  }
  const bool same = g.state == Graph::State::Seen && recorder_.log() == g.log &&
                    result == g.result && draws == g.draws;
  remember(g, result);
  g.draws = draws;
  g.state = same ? Graph::State::Stable : Graph::State::Seen;
  return result;
}

// The last pass's launches and result become the key's reference.
void StepGraphs::remember(Graph& g, const void* result) {
  g.log = recorder_.log();
  g.ops = recorder_.ops();
  g.result = result;
}

// Launches the key's graph: this step's forward and backward.
void StepGraphs::launch(const Graph& g) {
#if LOCKSTEP_CUDA_ENABLED
  if (ctx_.is_cuda())
    LOCKSTEP_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec),
                                        static_cast<cudaStream_t>(ctx_.stream())));
#endif
  for (const auto& f : g.kept) f();  // the CPU's kept launches (none on CUDA)
}

// The region again, eagerly, after a pass whose launches did not run (a failed capture, a host
// pass that logged something else); the random offset that pass advanced has been restored, so
// that the draws are those of an eager step. The key starts over from this run's log.
const void* StepGraphs::again(Graph& g, RegionRef region, const std::string& why) {
  ++stats_.fallbacks;
  if (stats_.fallbacks == 1) log().info("a CUDA graph of the training step was not used: {}", why);
  release(g);
  g.state = Graph::State::New;
  return record(g, region);
}

// A Stable key: captured, then launched (the capture ran nothing, on CUDA nor on the CPU, where
// the launches were kept).
const void* StepGraphs::capture(Graph& g, RegionRef region) {
  const uint64_t allocations = ctx_.allocations(), random = ctx_.random_offset();
  const uint64_t frees = detail::buffer_frees();
  // Buffers the region freed while the stream was captured: freed once this call has enqueued
  // the step's work (the graph or the region again), as an eager step would have freed them.
  struct FreeDeferred {
    ~FreeDeferred() { detail::free_deferred_buffers(); }
  } free_deferred;
  const void* result = nullptr;
  std::string failure;  // of the CUDA graph API (or an error the region threw)
  std::exception_ptr foreign;  // anything else the region threw
  bool api_failed = false;
#if LOCKSTEP_CUDA_ENABLED
  const auto stream = static_cast<cudaStream_t>(ctx_.stream());
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
#endif
  {
    const Attached attached(ctx_, recorder_, LaunchRecorder::Mode::Capture);
    bool capturing = ctx_.is_cpu();
#if LOCKSTEP_CUDA_ENABLED
    if (ctx_.is_cuda()) {
      const cudaError_t begin = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
      capturing = begin == cudaSuccess;
      if (!capturing) failure = cudaGetErrorString(begin);
      api_failed = !capturing;
    }
#endif
    try {
      if (capturing) result = region();
    } catch (const Error& e) {
      failure = e.what();
    } catch (...) {  // not lockstep's: the capture is ended below, then it goes on up
      failure = "an exception";
      foreign = std::current_exception();
    }
#if LOCKSTEP_CUDA_ENABLED
    if (ctx_.is_cuda() && capturing) {
      const cudaError_t end = cudaStreamEndCapture(stream, &graph);
      if (end == cudaSuccess && failure.empty()) {
        const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
        if (inst != cudaSuccess) failure = cudaGetErrorString(inst);
        api_failed = inst != cudaSuccess;
      } else if (failure.empty()) {
        failure = cudaGetErrorString(end);
        api_failed = true;
      }
      if (graph) cudaGraphDestroy(graph);
      if (!failure.empty()) {
        if (exec) cudaGraphExecDestroy(exec);
        exec = nullptr;
        (void)cudaGetLastError();
      }
    }
#endif
  }
  if (foreign) {
    const_cast<Context&>(ctx_).set_random_offset(random);
    release(g);
    g.state = Graph::State::New;
    std::rethrow_exception(foreign);
  }
  ++stats_.captured;
  const char* why = recorder_.uncapturable();
  const bool freed = detail::buffer_frees() != frees;
  if (!failure.empty() || why != nullptr || ctx_.allocations() != allocations || freed) {
    // Nothing ran: the region again, eagerly (an error of its own is thrown there again; work a
    // graph cannot hold is found there). A failure of the CUDA graph API itself turns graphs
    // off for the run.
    const std::string reason = !failure.empty() ? "capturing failed: " + failure
                               : why != nullptr ? std::string(why)
                               : freed          ? std::string("it freed memory")
                                                : std::string("it allocated memory");
#if LOCKSTEP_CUDA_ENABLED
    if (exec) cudaGraphExecDestroy(exec);
#endif
    const_cast<Context&>(ctx_).set_random_offset(random);
    if (api_failed) {
      disable(reason);
      ++stats_.eager;
      return region();
    }
    return again(g, region, reason);
  }
  // This step's work: the graph just captured.
#if LOCKSTEP_CUDA_ENABLED
  g.exec = exec;
#endif
  g.kept = recorder_.take_kept();
  launch(g);
  // Kept when the capture did what the logged runs did; otherwise the key starts over from the
  // capture's log.
  const uint64_t draws = ctx_.random_offset() - random;
  if (recorder_.log() == g.log && result == g.result && draws == g.draws) {
    g.allocations = allocations;
    g.state = Graph::State::Kept;
  } else {
    ++stats_.fallbacks;
    release(g);
    remember(g, result);
    g.draws = draws;
    g.state = Graph::State::Seen;
  }
  return result;
}

// A key with a graph: the host pass (launches skipped, logged), then the graph when the pass
// launched exactly what the capture did.
const void* StepGraphs::replay(Graph& g, RegionRef region) {
  if (ctx_.allocations() != g.allocations) {  // the workspace or a tensor may have moved
    release(g);
    g.state = Graph::State::Seen;
    return record(g, region);
  }
  const uint64_t random = ctx_.random_offset(), frees = detail::buffer_frees();
  const void* result = nullptr;
  {
    const Attached attached(ctx_, recorder_, LaunchRecorder::Mode::Skip);
    result = region();
  }
  // A buffer freed by the pass may be one the graph uses.
  if (recorder_.log() != g.log || result != g.result || recorder_.uncapturable() != nullptr ||
      ctx_.random_offset() - random != g.draws || ctx_.allocations() != g.allocations ||
      detail::buffer_frees() != frees) {
    const_cast<Context&>(ctx_).set_random_offset(random);
    return again(g, region, difference(g));
  }
  launch(g);
  ++stats_.replayed;
  return result;
}

}  // namespace lockstep::train

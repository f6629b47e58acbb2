// The CPU kernels' thread pool (kernels/cpu/parallel.h).
#include "kernels/cpu/parallel.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lockstep::kernels::cpu {

namespace {

thread_local int tls_slot = 0;  // pool_slot(): the workers set theirs

// The CPUs this process may run on: its affinity mask (mpirun's binding gives each rank its own
// cores, so ranks sharing a machine do not each start a thread per core), else every core.
int hardware_threads() {
  static const int n = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  return n;
}

class Pool {
 public:
  static Pool& instance() {
    static Pool pool(hardware_threads() - 1);
    return pool;
  }

  /// False when another job holds the pool: the caller runs its chunks itself.
  ///
  /// The caller works too, and waits only for the helpers that joined the job before it ran out
  /// of chunks: a helper still asleep then finds the job closed and goes back to sleep, instead
  /// of the caller waiting for it to wake up (up to a scheduler tick, 4 ms, on the development VM)
  /// just to learn that nothing is left.
  bool run(int threads, int64_t chunks, const ChunkRef& chunk) {
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    const int helpers = std::min<int>(threads - 1, static_cast<int>(workers_.size()));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &chunk;
      chunks_ = chunks;
      next_.store(0, std::memory_order_relaxed);
      helpers_ = helpers;
      active_ = 0;
      open_ = true;
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    open_ = false;  // every chunk is taken: no helper joins from now on
    done_.wait(lock, [&] { return active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { loop(i); });
  }

  // Takes chunks until none is left.
  void work() {
    for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < chunks_;) {
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void loop(int index) {
    tls_slot = index + 1;
    uint64_t seen = 0;
    for (;;) {
      // A short spin first: kernels come in quick succession within a step.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      if (!open_ || index >= helpers_) continue;  // the job is done, or not wanted for it
      ++active_;
      lock.unlock();
      work();
      lock.lock();
      if (--active_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const ChunkRef* job_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  int helpers_ = 0, active_ = 0;  // helpers wanted, helpers in the job now
  bool open_ = false;             // helpers may still join the job
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace

int pool_slots() { return std::max(1, hardware_threads()); }
int pool_slot() { return tls_slot; }

int kernel_threads(const Context& ctx) {
  const int asked = ctx.options().cpu_threads;
  return asked > 0 ? asked : hardware_threads();
}

void run_chunks(int threads, int64_t chunks, ChunkRef chunk) {
  if (threads > 1 && chunks > 1 && Pool::instance().run(threads, chunks, chunk)) return;
  for (int64_t c = 0; c < chunks; ++c) chunk(c);
}

}  // namespace lockstep::kernels::cpu

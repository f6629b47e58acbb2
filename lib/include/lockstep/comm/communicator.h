#pragma once
// Communicators: the collectives of the lockstep step, with a deadline on every wait.
//
// Backends: "local" (one process, no MPI), "mpi" (host buffers; device buffers staged through
// pinned host memory, so several ranks may share one GPU or have none), "nccl" (device buffers,
// one GPU per rank; the unique id is broadcast over MPI; a non-blocking communicator whose
// asynchronous errors are polled). create_communicator() picks one.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/error.h"

namespace lockstep::comm {

enum class DataType { F32, F64, I64, U64, U8 };
size_t data_type_size(DataType type);

struct CommOptions {
  /// Deadline of every wait in seconds (--comm-timeout).
  double timeout_s = 300.0;
  /// Deadline of communicator set-up and of the first collective, which include process start-up,
  /// NCCL initialisation and the first step's compilation/allocation work.
  double startup_timeout_s = 900.0;
};

/// A collective missed its deadline, or a peer failed. Thrown on every rank that observes it;
/// the message names the step and, where it could be established, the rank(s) that stopped
/// answering. After this error the communicator is unusable: call abort().
class CommError : public Error {
 public:
  CommError(const std::string& message, int64_t step, std::vector<int> silent_ranks)
      : Error(message), step_(step), silent_ranks_(std::move(silent_ranks)) {}
  int64_t step() const { return step_; }
  /// Ranks that did not answer a roll call after the deadline (empty when unknown).
  const std::vector<int>& silent_ranks() const { return silent_ranks_; }

 private:
  int64_t step_;
  std::vector<int> silent_ranks_;
};

/// Collective operations over all ranks of a job. Every call is collective: all ranks must make
/// the same calls in the same order with matching sizes. Calls block until the result is
/// complete (for CUDA buffers: complete on ctx's stream and waited for) or throw CommError at the
/// deadline. Not thread-safe.
class Communicator {
 public:
  virtual ~Communicator() = default;

  /// "local", "mpi" or "nccl".
  virtual std::string backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Rank among the processes of this node (picks the GPU).
  virtual int local_rank() const = 0;

  /// In place: data[i] = Σ over ranks of data[i], `count` elements of `type` in ctx's device
  /// memory (host memory for a CPU context). Every backend adds each element in rank order,
  /// ((x_0 + x_1) + x_2) + ..., on one rank and sends that result to the others (integer types,
  /// exact in any order, may take the backend's own collective; NCCL does so for F64 too, which
  /// only the CPU's double-precision models use): every rank receives identical bits, the same
  /// for any split of a buffer into calls and, for F32, the same on every backend.
  virtual void all_reduce_sum(const Context& ctx, void* data, int64_t count, DataType type) = 0;

  /// all_reduce_sum in two phases, so that the sum of a bucket that is final (the dense
  /// gradients of the layers a backward has finished) runs while other work goes on.
  /// all_reduce_sum_start() starts the sum of `count` elements at `data` and returns; they must
  /// not be read or written (on CUDA: by work on ctx's stream enqueued before
  /// all_reduce_wait()) until all_reduce_wait() has returned. Every rank starts the same buckets
  /// in the same order; every other collective first completes the started ones. Each element
  /// gets the bits all_reduce_sum gives it (the rank-ordered sum above). The base class sums at
  /// once (blocking); "mpi" on host memory posts the exchange and completes it in
  /// all_reduce_wait(); "nccl" enqueues on its own stream after ctx's work so far.
  virtual void all_reduce_sum_start(const Context& ctx, void* data, int64_t count, DataType type);
  /// Completes every started sum: on return the data holds the sums (CPU), or work enqueued on
  /// ctx's stream from now on sees them (CUDA; the host does not wait here).
  virtual void all_reduce_wait(const Context& ctx);

  /// Variable-size all-gather: rank r contributes counts[r] elements from `send`; `recv` receives
  /// Σ counts elements, rank 0's first. `counts` must be identical on every rank (e.g. taken from
  /// a preceding all-reduce). Buffers live in ctx's device memory.
  virtual void all_gather_v(const Context& ctx, const void* send, void* recv,
                            const std::vector<int64_t>& counts, DataType type) = 0;

  /// `count` elements at `data` on `root` are copied to every rank.
  virtual void broadcast(const Context& ctx, void* data, int64_t count, DataType type,
                         int root) = 0;

  virtual void barrier() = 0;

  /// For unwinding after an error, before the streams that wait on this communicator's work are
  /// synchronised: waits (bounded by the current step's deadline, shorter when a peer's roll
  /// call shows it gave up) until the collectives this rank enqueued have run, and aborts them
  /// when they cannot (a peer never posted its part), so that no stream stays blocked on them.
  /// The communicator may be unusable afterwards (CommError). Never throws. "mpi" completes its
  /// started sums here (afterwards nothing of theirs reads or writes the caller's buffers, which
  /// the unwinding caller may free); "nccl" settles or aborts its stream's work; "local" has
  /// nothing in flight.
  virtual void settle_enqueued() noexcept {}

  /// Ends the whole job after a fatal fault: aborts the underlying communicator(s) so that no rank
  /// stays blocked, and terminates this process with `exit_code` (MPI_Abort for MPI jobs). Never
  /// returns; prints nothing (callers print the reason first).
  [[noreturn]] virtual void abort(int exit_code) = 0;

  /// The training step the next collectives belong to (used in timeout messages). Step 0 and
  /// set-up use CommOptions::startup_timeout_s; later steps timeout_s.
  void set_step(int64_t step) { step_ = step; }
  int64_t step() const { return step_; }

  /// Calls made so far, for tests and statistics.
  struct Stats {
    /// all_reduce: all_reduce_sum calls; all_reduce_started: all_reduce_sum_start calls (the
    /// bytes of both count in bytes_all_reduced).
    int64_t all_reduce = 0, all_reduce_started = 0, all_gather = 0, broadcast = 0, barrier = 0;
    int64_t bytes_all_reduced = 0, bytes_gathered = 0;
  };
  const Stats& stats() const { return stats_; }

 protected:
  Stats stats_;
  int64_t step_ = 0;
};

/// Creates this process's communicator:
///  - "local": a single process (size 1); no MPI.
///  - "mpi": MPI_COMM_WORLD (MPI is initialised here if needed and finalised by the
///    communicator's destructor when it initialised it).
///  - "nccl": one GPU per rank, device = local_rank; throws Error when two ranks of a node would
///    share a GPU or the build has no NCCL, naming the reason and suggesting --comm mpi.
///  - "auto": NCCL when `device` is CUDA, the build has NCCL and every rank of every node has its
///    own GPU; else MPI when launched under an MPI launcher (OMPI_COMM_WORLD_SIZE / PMI_SIZE set);
///    else local.
std::unique_ptr<Communicator> create_communicator(const std::string& kind, const Device& device,
                                                  const CommOptions& options = {});

/// Node-local rank and size from the launcher's environment (OMPI_COMM_WORLD_LOCAL_RANK, …),
/// {0, 1} when not launched by one. Lets a program pick its GPU before creating a communicator.
std::pair<int, int> launcher_local_rank();

}  // namespace lockstep::comm

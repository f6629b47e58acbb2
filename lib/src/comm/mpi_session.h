#pragma once
// Internal: the MPI side shared by the mpi and nccl communicators. Only include where
// LOCKSTEP_MPI_ENABLED is 1.
//
// A session owns MPI's initialisation (when it did it), two duplicates of MPI_COMM_WORLD with
// MPI_ERRORS_RETURN (one for collectives, one for the roll call), the node layout, and the
// deadline logic: every wait polls with back-off until done or the deadline, and a missed deadline
// becomes a roll call and a CommError.

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/deadline.h"
#include "lockstep/comm/communicator.h"

namespace lockstep::comm::detail {

class MpiSession {
 public:
  /// Initialises MPI (MPI_THREAD_FUNNELED) unless it already is, duplicates MPI_COMM_WORLD and
  /// learns which ranks share a node. Every set-up wait has options.startup_timeout_s.
  explicit MpiSession(const CommOptions& options);
  /// Frees the communicators and finalises MPI if this session initialised it; after a fault
  /// (failed()) it touches neither, since peers may be dead and MPI_Finalize would hang.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  /// MPI_Get_processor_name of every rank (index = rank).
  const std::vector<std::string>& hosts() const { return hosts_; }
  /// The communicator for collectives (a duplicate of MPI_COMM_WORLD, MPI_ERRORS_RETURN).
  MPI_Comm comm() const { return comm_; }
  const CommOptions& options() const { return options_; }
  bool failed() const { return failed_; }
  /// Throws CommError when an earlier fault left the communicator unusable.
  void check_usable(const char* op, int64_t step) const;

  /// The deadline of a wait at `step`: startup_timeout_s at step 0, else timeout_s.
  Deadline deadline_for(int64_t step) const;

  /// How a poll ended.
  enum class Outcome { kDone, kExpired, kPeerGaveUp, kError };
  struct PollResult {
    Outcome outcome = Outcome::kDone;
    std::string error;  // kError: what failed
    int peer = -1;      // kPeerGaveUp: the rank whose roll call was seen
  };
  /// Calls `test` with back-off until it reports completion (1), failure (-1, with `error` set)
  /// or the deadline passes. Once the wait is no longer short it also watches for a peer's roll
  /// call: a peer that gave up will never finish this collective, so neither can we.
  PollResult poll(const std::function<int(std::string& error)>& test, const Deadline& deadline);

  /// Waits for `n` MPI requests on comm(); throws CommError (after the roll call) when they miss
  /// the deadline or fail. `op` and `step` name the wait in the message.
  void wait(MPI_Request* requests, int n, const char* op, int64_t step, const Deadline& deadline);

  /// Checks the return code of a call that posts a non-blocking operation; a failure is treated
  /// like a failed wait (a peer may be gone).
  void check_posted(int rc, const char* op, int64_t step, const Deadline& deadline);

  /// Ends a failed wait: runs the roll call, marks the session failed and throws CommError with
  /// `rank R: <op> at step S <how it ended>; <who stopped answering>`.
  [[noreturn]] void fail(const PollResult& result, const char* op, int64_t step,
                         const Deadline& deadline);

  /// Set-up helper: every rank's `mine` (index = rank), gathered with the start-up deadline.
  std::vector<std::string> all_gather_strings(const std::string& mine, const char* op);
  /// Set-up helper: broadcasts `bytes` at `data` from `root` with the start-up deadline.
  void broadcast_bytes(void* data, int bytes, int root, const char* op);
  /// An MPI_Ibarrier on comm(), waited for with the deadline of `step`.
  void barrier(int64_t step);

  /// MPI_Abort(MPI_COMM_WORLD, code); never returns.
  [[noreturn]] void abort(int code);

 private:
  /// Sends this rank's step to every peer and waits up to `grace_s` for theirs; returns the
  /// ranks that did not answer and fills peer_steps_ for those that did.
  std::vector<int> roll_call(int64_t step, double grace_s);

  CommOptions options_;
  bool initialized_mpi_ = false;
  bool failed_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::vector<std::string> hosts_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm roll_comm_ = MPI_COMM_NULL;
  // Roll-call buffers live as long as the session: requests to dead peers are left pending.
  int64_t roll_step_ = 0;
  std::vector<int64_t> peer_steps_;
};

}  // namespace lockstep::comm::detail

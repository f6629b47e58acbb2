// The MPI side of the mpi and nccl communicators: set-up, deadlines and the roll call.
#include "lockstep/config.h"

#if LOCKSTEP_MPI_ENABLED

#include "comm/mpi_session.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "comm/mpi_check.h"

namespace lockstep::comm::detail {
namespace {

/// Tag of roll-call messages; they travel on a communicator of their own, so nothing else can
/// match them.
constexpr int kRollCallTag = 0x4C53;  // "LS"
/// Width of the fixed-size records exchanged by all_gather_strings.
constexpr int kStringWidth = 256;

std::string mpi_error_text(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return fmt::format("MPI error {} ({})", code, std::string(buf, static_cast<size_t>(len)));
}

std::string join_ranks(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

}  // namespace

MpiSession::MpiSession(const CommOptions& options) : options_(options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  LOCKSTEP_CHECK(!finalized,
                 "cannot create an MPI communicator: MPI was already finalised in this process "
                 "(create one communicator per process and keep it until the end)");
  if (!initialized) {
    int provided = 0;
    LOCKSTEP_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    initialized_mpi_ = true;
  }

  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));

  // Non-blocking duplicates, so that a rank that never starts is a timeout, not a hang. The new
  // handles are only valid once the requests complete.
  const Deadline deadline(options_.startup_timeout_s);
  MPI_Comm comm = MPI_COMM_NULL, roll_comm = MPI_COMM_NULL;
  MPI_Request requests[2];
  LOCKSTEP_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &comm, &requests[0]));
  LOCKSTEP_MPI_CHECK(MPI_Comm_idup(MPI_COMM_WORLD, &roll_comm, &requests[1]));
  const PollResult dup = poll(
      [&](std::string& error) {
        int flag = 0;
        const int rc = MPI_Testall(2, requests, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) error = mpi_error_text(rc);
        return rc != MPI_SUCCESS ? -1 : flag ? 1 : 0;
      },
      deadline);
  if (dup.outcome != Outcome::kDone) fail(dup, "set-up (MPI_Comm_idup)", 0, deadline);
  comm_ = comm;
  roll_comm_ = roll_comm;
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(roll_comm_, MPI_ERRORS_RETURN));

  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  LOCKSTEP_MPI_CHECK(MPI_Get_processor_name(name, &len));
  hosts_ = all_gather_strings(std::string(name, static_cast<size_t>(len)), "set-up (host names)");
  local_rank_ = static_cast<int>(std::count(hosts_.begin(), hosts_.begin() + rank_, hosts_[rank_]));
  local_size_ = static_cast<int>(std::count(hosts_.begin(), hosts_.end(), hosts_[rank_]));
}

MpiSession::~MpiSession() {
  if (failed_) return;  // peers may be dead: freeing or finalising could block forever
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  if (roll_comm_ != MPI_COMM_NULL) MPI_Comm_free(&roll_comm_);
  if (initialized_mpi_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}

void MpiSession::check_usable(const char* op, int64_t step) const {
  if (failed_)
    throw CommError(fmt::format("rank {}: {} at step {}: the communicator is unusable after an "
                                "earlier communication fault; call abort()",
                                rank_, op, step),
                    step, {});
}

Deadline MpiSession::deadline_for(int64_t step) const {
  return Deadline(step == 0 ? options_.startup_timeout_s : options_.timeout_s);
}

MpiSession::PollResult MpiSession::poll(const std::function<int(std::string& error)>& test,
                                        const Deadline& deadline) {
  Backoff backoff;
  for (;;) {
    PollResult result;
    const int state = test(result.error);
    if (state > 0) return result;
    if (state < 0) {
      result.outcome = Outcome::kError;
      return result;
    }
    if (deadline.expired()) {
      result.outcome = Outcome::kExpired;
      return result;
    }
    if (backoff.sleeping() && roll_comm_ != MPI_COMM_NULL) {
      int flag = 0;
      MPI_Status status;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kRollCallTag, roll_comm_, &flag, &status) == MPI_SUCCESS &&
          flag) {
        result.outcome = Outcome::kPeerGaveUp;
        result.peer = status.MPI_SOURCE;
        return result;
      }
    }
    backoff.pause();
  }
}

void MpiSession::wait(MPI_Request* requests, int n, const char* op, int64_t step,
                      const Deadline& deadline) {
  const PollResult result = poll(
      [&](std::string& error) {
        int flag = 0;
        const int rc = MPI_Testall(n, requests, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) error = mpi_error_text(rc);
        return rc != MPI_SUCCESS ? -1 : flag ? 1 : 0;
      },
      deadline);
  if (result.outcome != Outcome::kDone) fail(result, op, step, deadline);
}

void MpiSession::check_posted(int rc, const char* op, int64_t step, const Deadline& deadline) {
  if (rc == MPI_SUCCESS) return;
  PollResult result;
  result.outcome = Outcome::kError;
  result.error = mpi_error_text(rc);
  fail(result, op, step, deadline);
}

void MpiSession::fail(const PollResult& result, const char* op, int64_t step,
                      const Deadline& deadline) {
  std::string message = fmt::format("rank {}: {} at step {} ", rank_, op, step);
  switch (result.outcome) {
    case Outcome::kExpired:
      message += fmt::format("timed out after {:.1f} s", deadline.seconds());
      break;
    case Outcome::kPeerGaveUp:
      message += fmt::format("was abandoned after {:.1f} s: rank {} timed out and called the roll",
                             deadline.elapsed_s(), result.peer);
      break;
    case Outcome::kError:
      message += fmt::format("failed after {:.1f} s: {}", deadline.elapsed_s(), result.error);
      break;
    case Outcome::kDone:
      LOCKSTEP_ASSERT(result.outcome != Outcome::kDone);
  }
  const bool first_fault = !failed_;
  failed_ = true;
  if (roll_comm_ == MPI_COMM_NULL || !first_fault) {
    // Before set-up finished there is no roll-call communicator; after a first fault its buffers
    // may still be in use by requests to dead peers.
    throw CommError(message + "; could not ask the other ranks which of them are alive", step, {});
  }
  const double grace_s = std::min(10.0, std::max(1.0, deadline.seconds() / 2));
  const std::vector<int> silent = roll_call(step, grace_s);
  if (!silent.empty()) {
    message += fmt::format("; rank(s) {} stopped answering (no roll-call reply within {:.1f} s)",
                           join_ranks(silent), grace_s);
  } else if (size_ > 1) {
    message +=
        "; every rank answered the roll call, so none has died: a rank was slower than the "
        "timeout (raise --comm-timeout) or the ranks called different collectives";
  }
  std::string elsewhere;
  for (int r = 0; r < size_; ++r) {
    const bool answered = r != rank_ && std::find(silent.begin(), silent.end(), r) == silent.end();
    if (answered && peer_steps_[static_cast<size_t>(r)] != step)
      elsewhere += fmt::format("{}rank {} at step {}", elsewhere.empty() ? "" : ", ", r,
                               peer_steps_[static_cast<size_t>(r)]);
  }
  if (!elsewhere.empty()) message += "; ranks at another step: " + elsewhere;
  throw CommError(message, step, silent);
}

std::vector<int> MpiSession::roll_call(int64_t step, double grace_s) {
  roll_step_ = step;
  peer_steps_.assign(static_cast<size_t>(size_), -1);
  std::vector<MPI_Request> replies(static_cast<size_t>(size_), MPI_REQUEST_NULL);
  std::vector<bool> answered(static_cast<size_t>(size_), false);
  answered[static_cast<size_t>(rank_)] = true;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    const size_t i = static_cast<size_t>(r);
    if (MPI_Irecv(&peer_steps_[i], 1, MPI_INT64_T, r, kRollCallTag, roll_comm_, &replies[i]) !=
        MPI_SUCCESS)
      replies[i] = MPI_REQUEST_NULL;
  }
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    // Never waited for: a send to a dead rank may not complete. roll_step_ outlives it.
    MPI_Request send = MPI_REQUEST_NULL;
    if (MPI_Isend(&roll_step_, 1, MPI_INT64_T, r, kRollCallTag, roll_comm_, &send) == MPI_SUCCESS)
      MPI_Request_free(&send);
  }
  const Deadline grace(grace_s);
  Backoff backoff;
  for (;;) {
    bool pending = false;
    for (size_t i = 0; i < replies.size(); ++i) {
      if (replies[i] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      if (MPI_Test(&replies[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        replies[i] = MPI_REQUEST_NULL;  // the transport gave up on that peer: it stays silent
      } else if (flag) {
        answered[i] = true;
      } else {
        pending = true;
      }
    }
    if (!pending || grace.expired()) break;
    backoff.pause();
  }
  std::vector<int> silent;
  for (int r = 0; r < size_; ++r) {
    const size_t i = static_cast<size_t>(r);
    if (replies[i] != MPI_REQUEST_NULL) {
      MPI_Cancel(&replies[i]);
      MPI_Request_free(&replies[i]);
    }
    if (!answered[i]) silent.push_back(r);
  }
  return silent;
}

std::vector<std::string> MpiSession::all_gather_strings(const std::string& mine, const char* op) {
  LOCKSTEP_ASSERT(mine.size() < static_cast<size_t>(kStringWidth));
  std::vector<char> send(kStringWidth, '\0');
  std::copy(mine.begin(), mine.end(), send.begin());
  std::vector<char> all(static_cast<size_t>(kStringWidth) * static_cast<size_t>(size_));
  MPI_Request request;
  LOCKSTEP_MPI_CHECK(MPI_Iallgather(send.data(), kStringWidth, MPI_CHAR, all.data(), kStringWidth,
                                    MPI_CHAR, comm_, &request));
  wait(&request, 1, op, 0, Deadline(options_.startup_timeout_s));
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) out.emplace_back(&all[static_cast<size_t>(r) * kStringWidth]);
  return out;
}

void MpiSession::broadcast_bytes(void* data, int bytes, int root, const char* op) {
  MPI_Request request;
  LOCKSTEP_MPI_CHECK(MPI_Ibcast(data, bytes, MPI_BYTE, root, comm_, &request));
  wait(&request, 1, op, 0, Deadline(options_.startup_timeout_s));
}

void MpiSession::barrier(int64_t step) {
  const Deadline deadline = deadline_for(step);
  MPI_Request request;
  check_posted(MPI_Ibarrier(comm_, &request), "barrier", step, deadline);
  wait(&request, 1, "barrier", step, deadline);
}

void MpiSession::abort(int code) {
  std::fflush(nullptr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this only satisfies [[noreturn]]
}

}  // namespace lockstep::comm::detail

#endif  // LOCKSTEP_MPI_ENABLED

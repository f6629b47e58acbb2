#pragma once
// Failures in a multi-rank job: the errors every rank raises together, the ones that leave the
// peers of one rank waiting, and what a driver does with each (docs/lockstep.md, "Failures").
//
// The library never exits on its own. Every phase that can fail on some ranks only ends in a
// vote, so that every rank raises the same lockstep::JobError and the job can unwind normally.
// Anything else that leaves a collective call on one rank only — a communication fault
// (comm::CommError), a dead device (lockstep::DeviceError), an internal error — leaves the other
// ranks waiting: the driver must end the job with abort_job() (or set
// TrainerConfig::abort_on_error, which makes the trainer do it).

#include <exception>
#include <string>

#include "lockstep/comm/communicator.h"
#include "lockstep/core/context.h"
#include "lockstep/core/error.h"

namespace lockstep::train {

/// Process exit codes of the lockstep tools, one per kind of failure.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,        // bad flags, data, configuration or outputs; a failure every rank raised
  kExitCommError = 3,    // a peer died or stopped answering (comm::CommError)
  kExitDeviceError = 4,  // this rank's device failed (DeviceError)
  kExitInternal = 70,    // anything else: a lockstep bug
};

/// The exit code for `e` (see ExitCode).
int exit_code_for(const std::exception& e);

/// True when every rank raised `e` together (a JobError): the job can unwind and exit normally.
/// False when only this rank may have: its peers are, or will be, waiting for it.
bool raised_on_every_rank(const std::exception& e);

/// Logs "rank R: <what>" and "aborting the job (exit code C)" at once, then ends every rank of the
/// job with exit_code_for(e) (Communicator::abort: ncclCommAbort, MPI_Abort).
[[noreturn]] void abort_job(comm::Communicator& comm, const std::exception& e);

/// Ends a phase that can fail on some ranks only: each rank passes its error message ("" when its
/// part succeeded). A failing rank logs its message at once; then, when any rank failed, every
/// rank throws the same JobError: "<phase> failed on rank(s) 1: rank 1: <message>". Collective.
void vote(comm::Communicator& comm, const Context& ctx, const std::string& phase,
          const std::string& error);

/// Runs `fn` on this rank, then votes on the outcome: a lockstep::Error thrown by `fn` on any rank
/// becomes the same JobError on every rank. A DeviceError or CommError is not voted on (this rank
/// can no longer take part in collectives): it propagates. Collective.
template <class F>
void agree(comm::Communicator& comm, const Context& ctx, const std::string& phase, F&& fn) {
  std::string error;
  try {
    fn();
  } catch (const DeviceError&) {
    throw;
  } catch (const comm::CommError&) {
    throw;
  } catch (const Error& e) {
    error = e.what();
  }
  vote(comm, ctx, phase, error);
}

}  // namespace lockstep::train

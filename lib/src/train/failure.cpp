#include "lockstep/train/failure.h"

#include <cstdlib>

#include "lockstep/core/logging.h"
#include "train/host_collectives.h"

namespace lockstep::train {

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const comm::CommError*>(&e)) return kExitCommError;
  if (dynamic_cast<const DeviceError*>(&e)) return kExitDeviceError;
  if (dynamic_cast<const Error*>(&e)) return kExitError;
  return kExitInternal;
}

bool raised_on_every_rank(const std::exception& e) {
  return dynamic_cast<const JobError*>(&e) != nullptr;
}

void abort_job(comm::Communicator& comm, const std::exception& e) {
  const int code = exit_code_for(e), rank = comm.rank();
  log().error("rank {}: {}{}", rank, code == kExitInternal ? "internal error: " : "", e.what());
  log().error("rank {}: aborting the job (exit code {}) so that no rank waits for this one", rank,
              code);
  comm.abort(code);
  std::_Exit(code);  // not reached (abort() does not return); tells the compiler so
}

void vote(comm::Communicator& comm, const Context& ctx, const std::string& phase,
          const std::string& error) {
  HostCollectives(comm, ctx).vote(phase, error);
}

}  // namespace lockstep::train

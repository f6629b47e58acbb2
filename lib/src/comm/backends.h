#pragma once
// Internal: the communicator backends behind create_communicator().

#include <memory>
#include <string>

#include "lockstep/comm/communicator.h"
#include "lockstep/config.h"

/// The NCCL backend needs MPI too: the unique id, the barrier and the roll call travel over it.
#define LOCKSTEP_NCCL_COMM_ENABLED (LOCKSTEP_NCCL_ENABLED && LOCKSTEP_MPI_ENABLED)

namespace lockstep::comm::detail {

class MpiSession;

/// Size 1, no MPI.
std::unique_ptr<Communicator> make_local_communicator();

#if LOCKSTEP_MPI_ENABLED
/// Collectives on host memory over MPI (device buffers are staged through pinned memory).
std::unique_ptr<Communicator> make_mpi_communicator(std::unique_ptr<MpiSession> session);
#endif

#if LOCKSTEP_NCCL_COMM_ENABLED
/// Why the ranks cannot each have their own GPU when every rank uses `device` (empty when they
/// can). Collective over the session; every rank gets the same answer.
std::string gpu_sharing_problem(MpiSession& session, const Device& device);
/// NCCL on `device`; the caller has checked gpu_sharing_problem().
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<MpiSession> session,
                                                     const Device& device);
#endif

}  // namespace lockstep::comm::detail

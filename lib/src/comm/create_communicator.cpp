// create_communicator(): picks and builds a backend; the launcher's node-local rank.
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "comm/backends.h"
#include "lockstep/core/logging.h"

#if LOCKSTEP_MPI_ENABLED
#include "comm/mpi_session.h"
#endif

namespace lockstep::comm {
namespace {

/// True when an MPI launcher (mpirun, srun with PMI, hydra) started this process.
bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

/// The value of environment variable `name` as a non-negative int, or -1 when it is unset.
int env_int(const char* name) {
  const char* text = std::getenv(name);
  if (!text) return -1;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  LOCKSTEP_CHECK(*text != '\0' && *end == '\0' && errno == 0 && value >= 0 && value <= INT32_MAX,
                 "environment variable {} = '{}' is not a non-negative integer (it is set by the "
                 "MPI launcher; unset it when not running under one)",
                 name, text);
  return static_cast<int>(value);
}

#if LOCKSTEP_MPI_ENABLED
std::unique_ptr<detail::MpiSession> make_session(const CommOptions& options) {
  return std::make_unique<detail::MpiSession>(options);
}
#endif

}  // namespace

size_t data_type_size(DataType type) {
  switch (type) {
    case DataType::F32:
      return 4;
    case DataType::F64:
      return 8;
    case DataType::I64:
      return 8;
    case DataType::U64:
      return 8;
    case DataType::U8:
      return 1;
  }
  throw Error(fmt::format("data_type_size: unknown DataType {}", static_cast<int>(type)));
}

void Communicator::all_reduce_sum_start(const Context& ctx, void* data, int64_t count,
                                        DataType type) {
  all_reduce_sum(ctx, data, count, type);  // at once: nothing left for all_reduce_wait()
  --stats_.all_reduce;
  ++stats_.all_reduce_started;
}

void Communicator::all_reduce_wait(const Context&) {}

std::pair<int, int> launcher_local_rank() {
  // Open MPI, then MPICH/Intel MPI (hydra).
  const std::pair<const char*, const char*> names[] = {
      {"OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
  };
  for (const auto& [rank_name, size_name] : names) {
    const int rank = env_int(rank_name);
    if (rank < 0) continue;
    const int size = env_int(size_name);
    LOCKSTEP_CHECK(size > rank,
                   "environment variable {} = {} but {} = {}: the local rank must be "
                   "below the local size",
                   rank_name, rank, size_name,
                   size < 0 ? std::string("(unset)") : std::to_string(size));
    return {rank, size};
  }
  return {0, 1};
}

std::unique_ptr<Communicator> create_communicator(const std::string& kind, const Device& device,
                                                  const CommOptions& options) {
  LOCKSTEP_CHECK(kind == "auto" || kind == "local" || kind == "mpi" || kind == "nccl",
                 "--comm = '{}' is not a communicator: use auto, local, mpi or nccl", kind);
  LOCKSTEP_CHECK(options.timeout_s > 0, "--comm-timeout = {} s must be positive",
                 options.timeout_s);
  LOCKSTEP_CHECK(options.startup_timeout_s > 0, "the start-up timeout ({} s) must be positive",
                 options.startup_timeout_s);
  if (kind == "local" || (kind == "auto" && !launched_by_mpi()))
    return detail::make_local_communicator();

#if !LOCKSTEP_MPI_ENABLED
  throw Error(fmt::format(
      "--comm {}: this build of lockstep has no MPI{}; rebuild with MPI (libopenmpi-dev) or run "
      "one process with --comm local",
      kind, kind == "auto" ? " but the process was started by an MPI launcher" : ""));
#else
  if (kind == "mpi") return detail::make_mpi_communicator(make_session(options));
  if (kind == "nccl") {
#if LOCKSTEP_NCCL_COMM_ENABLED
    LOCKSTEP_CHECK(device.is_cuda(),
                   "--comm nccl needs a CUDA device but the device is {}: use --device cuda or "
                   "--comm mpi",
                   device.str());
    auto session = make_session(options);
    const std::string problem = detail::gpu_sharing_problem(*session, device);
    LOCKSTEP_CHECK(problem.empty(),
                   "--comm nccl needs one GPU per rank, but {}: start at most one rank per GPU on "
                   "each node and pick each rank's GPU by its local rank "
                   "(lockstep::comm::launcher_local_rank()), or use --comm mpi, which lets ranks "
                   "share a GPU",
                   problem);
    return detail::make_nccl_communicator(std::move(session), device);
#else
    throw Error(
        "--comm nccl: this build of lockstep has no NCCL (it needs CUDA and libnccl-dev); use "
        "--comm mpi");
#endif
  }
  // auto under a launcher: MPI first, then NCCL if every rank has a GPU of its own.
  auto session = make_session(options);
#if LOCKSTEP_NCCL_COMM_ENABLED
  if (device.is_cuda()) {
    const std::string problem = detail::gpu_sharing_problem(*session, device);
    if (problem.empty()) return detail::make_nccl_communicator(std::move(session), device);
    if (session->rank() == 0)
      log().info("--comm auto: using mpi rather than nccl because {}", problem);
  }
#endif
  return detail::make_mpi_communicator(std::move(session));
#endif
}

}  // namespace lockstep::comm

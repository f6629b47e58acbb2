// The NCCL communicator: collectives on device buffers, one GPU per rank.
//
// MPI carries everything that is not device data: the unique id, the GPU-sharing check, the
// barrier and the roll call after a fault. The NCCL communicator is non-blocking
// (config.blocking = 0): every NCCL call returns at once, and the wait for it — first for NCCL to
// accept the work (ncclCommGetAsyncError leaves ncclInProgress), then for ctx's stream to run it
// (cudaStreamQuery) — polls against the deadline, so a hung peer can never block this rank inside
// NCCL. On a missed deadline or an asynchronous error the NCCL communicator is aborted
// (ncclCommAbort), the roll is called over MPI, and CommError is thrown.
//
// all_gather_v is a group of ncclBroadcast calls, one per rank with a non-zero count, each
// writing straight into its slice of `recv`: no padding, no scratch buffer, no compaction copy.
#include "comm/backends.h"

#if LOCKSTEP_NCCL_COMM_ENABLED

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "comm/collective_args.h"
#include "comm/mpi_session.h"
#include "comm/nccl_check.h"
#include "core/cuda_check.h"

namespace lockstep::comm::detail {
namespace {

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::F32:
      return ncclFloat32;
    case DataType::F64:
      return ncclFloat64;
    case DataType::I64:
      return ncclInt64;
    case DataType::U64:
      return ncclUint64;
    case DataType::U8:
      return ncclUint8;
  }
  LOCKSTEP_ASSERT(false);
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<MpiSession> session, const Device& device)
      : session_(std::move(session)), device_(device) {
    LOCKSTEP_CUDA_CHECK(cudaSetDevice(device_.index));
    // Rank 0 broadcasts an all-zero id when it cannot make one, so that the others fail at once
    // instead of waiting for the start-up deadline.
    ncclUniqueId id{};
    std::string id_error;
    if (session_->rank() == 0) {
      try {
        LOCKSTEP_NCCL_CHECK(ncclGetUniqueId(&id));
      } catch (const Error& e) {
        id = ncclUniqueId{};
        id_error = e.what();
      }
    }
    session_->broadcast_bytes(&id, static_cast<int>(sizeof id), 0, "NCCL set-up (unique id)");
    LOCKSTEP_CHECK(id_error.empty(), "{}", id_error);
    const ncclUniqueId zero{};
    LOCKSTEP_CHECK(std::memcmp(&id, &zero, sizeof id) != 0,
                   "NCCL set-up: rank 0 could not create the NCCL unique id (see its log)");
    const Deadline deadline = session_->deadline_for(0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t rc =
        ncclCommInitRankConfig(&comm_, session_->size(), id, session_->rank(), &config);
    settle(rc, nullptr, "NCCL set-up (ncclCommInitRankConfig)", 0, deadline);
  }

  ~NcclCommunicator() override {
    if (!comm_) return;
    if (session_->failed()) {
      ncclCommAbort(comm_);
      return;
    }
    // ncclCommFinalize flushes outstanding work; the wait is bounded so that a destructor never
    // hangs on a dead peer (the communicator is aborted instead).
    cudaSetDevice(device_.index);
    ncclResult_t state = ncclCommFinalize(comm_);
    const Deadline deadline(session_->options().timeout_s);
    Backoff backoff;
    while (state == ncclInProgress && !deadline.expired()) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
      backoff.pause();
    }
    if (state == ncclSuccess)
      ncclCommDestroy(comm_);
    else
      ncclCommAbort(comm_);
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return session_->rank(); }
  int size() const override { return session_->size(); }
  int local_rank() const override { return session_->local_rank(); }

  void all_reduce_sum(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum", count, data);
    check_usable(ctx, "all_reduce");
    ++stats_.all_reduce;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
    if (count == 0) return;
    const Deadline deadline = session_->deadline_for(step_);
    cudaStream_t stream = lockstep::detail::stream_of(ctx);
    settle(ncclAllReduce(data, data, static_cast<size_t>(count), nccl_type(type), ncclSum, comm_,
                         stream),
           stream, "all_reduce", step_, deadline);
  }

  void all_gather_v(const Context& ctx, const void* send, void* recv,
                    const std::vector<int64_t>& counts, DataType type) override {
    const int64_t total = check_gather_counts(counts, size(), rank(), send, recv);
    check_usable(ctx, "all_gather_v");
    const size_t esize = data_type_size(type);
    ++stats_.all_gather;
    stats_.bytes_gathered += total * static_cast<int64_t>(esize);
    if (total == 0) return;
    const Deadline deadline = session_->deadline_for(step_);
    cudaStream_t stream = lockstep::detail::stream_of(ctx);
    ncclResult_t rc = ncclGroupStart();
    size_t offset = 0;  // elements
    for (int r = 0; r < size() && is_ok(rc); ++r) {
      const size_t n = static_cast<size_t>(counts[static_cast<size_t>(r)]);
      if (n == 0) continue;
      // sendbuff is read on the root only.
      rc = ncclBroadcast(send, static_cast<unsigned char*>(recv) + offset * esize, n,
                         nccl_type(type), r, comm_, stream);
      offset += n;
    }
    const ncclResult_t end = ncclGroupEnd();
    settle(is_ok(rc) ? end : rc, stream, "all_gather_v", step_, deadline);
  }

  void broadcast(const Context& ctx, void* data, int64_t count, DataType type, int root) override {
    check_count("broadcast", count, data);
    check_root(root, size());
    check_usable(ctx, "broadcast");
    ++stats_.broadcast;
    if (count == 0) return;
    const Deadline deadline = session_->deadline_for(step_);
    cudaStream_t stream = lockstep::detail::stream_of(ctx);
    settle(
        ncclBroadcast(data, data, static_cast<size_t>(count), nccl_type(type), root, comm_, stream),
        stream, "broadcast", step_, deadline);
  }

  void barrier() override {
    session_->check_usable("barrier", step_);
    ++stats_.barrier;
    session_->barrier(step_);
  }

  [[noreturn]] void abort(int exit_code) override {
    abort_nccl();
    session_->abort(exit_code);
  }

 private:
  static bool is_ok(ncclResult_t rc) { return rc == ncclSuccess || rc == ncclInProgress; }

  std::string nccl_error_text(ncclResult_t rc) const {
    const char* last = comm_ ? ncclGetLastError(comm_) : nullptr;
    return fmt::format("NCCL error {} ({}{}{})", static_cast<int>(rc), ncclGetErrorString(rc),
                       last && *last ? "; last error: " : "", last ? last : "");
  }

  void check_usable(const Context& ctx, const char* op) {
    LOCKSTEP_CHECK(ctx.is_cuda() && ctx.device() == device_,
                   "{}: the nccl communicator works on {} but the context is on {}; use a "
                   "context on {} (or --comm mpi for CPU buffers)",
                   op, device_.str(), ctx.device().str(), device_.str());
    session_->check_usable(op, step_);
    LOCKSTEP_CUDA_CHECK(cudaSetDevice(device_.index));
  }

  /// After an NCCL call that returned `rc`: waits until NCCL has accepted the work and, with a
  /// stream, until the stream has run it. A failure or a missed deadline aborts the NCCL
  /// communicator, calls the roll over MPI and throws CommError.
  void settle(ncclResult_t rc, cudaStream_t stream, const char* op, int64_t step,
              const Deadline& deadline) {
    MpiSession::PollResult result;
    if (!is_ok(rc)) {
      result.outcome = MpiSession::Outcome::kError;
      result.error = nccl_error_text(rc);
    } else {
      result = session_->poll(
          [&](std::string& error) {
            ncclResult_t async = ncclSuccess;
            const ncclResult_t query = ncclCommGetAsyncError(comm_, &async);
            if (query != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
              error = nccl_error_text(query != ncclSuccess ? query : async);
              return -1;
            }
            if (async == ncclInProgress) return 0;
            if (!stream) return 1;
            const cudaError_t done = cudaStreamQuery(stream);
            if (done == cudaSuccess) return 1;
            if (done == cudaErrorNotReady) return 0;
            error =
                fmt::format("CUDA error {} ({})", cudaGetErrorName(done), cudaGetErrorString(done));
            return -1;
          },
          deadline);
    }
    if (result.outcome == MpiSession::Outcome::kDone) return;
    abort_nccl();
    session_->fail(result, op, step, deadline);
  }

  void abort_nccl() noexcept {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  std::unique_ptr<MpiSession> session_;
  Device device_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::string gpu_sharing_problem(MpiSession& session, const Device& device) {
  // Each rank reports "<visible device count>|<PCI bus id of its device>" (empty id when the
  // device cannot be used); every rank judges the same gathered records, so all agree.
  const int visible = cuda_device_count();
  std::string bus_id;
  if (device.is_cuda() && device.index >= 0 && device.index < visible) {
    char buf[64] = {};
    if (cudaDeviceGetPCIBusId(buf, static_cast<int>(sizeof buf), device.index) == cudaSuccess)
      bus_id = buf;
    else
      (void)cudaGetLastError();
  }
  const std::vector<std::string> records = session.all_gather_strings(
      fmt::format("{}|{}", visible, bus_id), "set-up (one GPU per rank check)");
  const std::vector<std::string>& hosts = session.hosts();
  std::map<std::pair<std::string, std::string>, int> owner;  // (host, bus id) -> first rank
  for (size_t r = 0; r < records.size(); ++r) {
    const size_t bar = records[r].find('|');
    const std::string count = records[r].substr(0, bar), bus = records[r].substr(bar + 1);
    const auto on_node = std::count(hosts.begin(), hosts.end(), hosts[r]);
    if (bus.empty())
      return fmt::format(
          "rank {} on {} has no usable CUDA device ({} visible, {} rank(s) on "
          "that node)",
          r, hosts[r], count, on_node);
    const auto [it, fresh] = owner.emplace(std::make_pair(hosts[r], bus), static_cast<int>(r));
    if (!fresh)
      return fmt::format(
          "ranks {} and {} on {} would share the GPU {} ({} rank(s) on that node, "
          "{} CUDA device(s) visible to each)",
          it->second, r, hosts[r], bus, on_node, count);
  }
  return {};
}

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<MpiSession> session,
                                                     const Device& device) {
  return std::make_unique<NcclCommunicator>(std::move(session), device);
}

}  // namespace lockstep::comm::detail

#endif  // LOCKSTEP_NCCL_COMM_ENABLED

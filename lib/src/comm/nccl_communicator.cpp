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
//
// all_reduce_sum of F32 is not ncclAllReduce, whose order of adds depends on where an element
// lies in the buffer (ring chunks, tree or NVLS by size): it is the MPI communicator's rank-ordered
// sum on the device. Rank r owns a block; a group of ncclSend/ncclRecv brings every rank's part
// of my block to me, kernels::sum_blocks adds them in rank order, a group of ncclBroadcast sends
// every owner's block to all. So a bucket of the gradients summed alone gets the bits of the
// whole buffer summed at once, and the bits are those of the CPU's MPI path. Same traffic as a
// ring all-reduce. Integer types (exact in any order) and F64 take ncclAllReduce.
//
// Every NCCL call and its sum kernel run on the communicator's own stream, after an event
// recorded on the caller's stream; the caller's stream then waits on an event recorded after
// them, and a blocking call polls that event (never the caller's whole stream). Started sums
// (all_reduce_sum_start, buckets of gradients during the backward) queue on that stream and run
// while the caller's stream goes on with the backward.
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
#include "kernels/reduce.h"

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
      : session_(std::move(session)), device_(device), own_(device, own_options()) {
    try {
      init();
    } catch (...) {  // no destructor runs for a constructor that throws
      release();
      throw;
    }
  }

  ~NcclCommunicator() override { release(); }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return session_->rank(); }
  int size() const override { return session_->size(); }
  int local_rank() const override { return session_->local_rank(); }

 private:
  void init() {
    LOCKSTEP_CUDA_CHECK(cudaSetDevice(device_.index));
    LOCKSTEP_CUDA_CHECK(cudaEventCreateWithFlags(&work_, cudaEventDisableTiming));
    LOCKSTEP_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
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

  void release() noexcept {
    release_comm();
    if (work_) cudaEventDestroy(work_);
    if (done_) cudaEventDestroy(done_);
    work_ = done_ = nullptr;
  }

  void release_comm() noexcept {
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

 public:
  void all_reduce_sum(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum", count, data);
    check_usable(ctx, "all_reduce");
    ++stats_.all_reduce;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
    const Deadline deadline = session_->deadline_for(step_);
    if (count > 0) {
      follow(ctx);
      enqueue_sum(data, count, type, deadline);
    }
    join_and_wait(ctx, "all_reduce", deadline);
  }

  void all_reduce_sum_start(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum_start", count, data);
    check_usable(ctx, "all_reduce");
    ++stats_.all_reduce_started;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
    if (count == 0) return;
    follow(ctx);
    enqueue_sum(data, count, type, session_->deadline_for(step_));
    started_ = true;
  }

  void all_reduce_wait(const Context& ctx) override {
    check_usable(ctx, "all_reduce");
    if (!started_) return;
    join(ctx);  // no host wait: the next blocking call's deadline covers these sums too
  }

  void all_gather_v(const Context& ctx, const void* send, void* recv,
                    const std::vector<int64_t>& counts, DataType type) override {
    const int64_t total = check_gather_counts(counts, size(), rank(), send, recv);
    check_usable(ctx, "all_gather_v");
    const size_t esize = data_type_size(type);
    ++stats_.all_gather;
    stats_.bytes_gathered += total * static_cast<int64_t>(esize);
    if (total == 0) {  // nothing to gather, but started sums complete here as promised
      if (started_) join_and_wait(ctx, "all_gather_v", session_->deadline_for(step_));
      return;
    }
    const Deadline deadline = session_->deadline_for(step_);
    cudaStream_t stream = own_stream();
    follow(ctx);
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
    settle(is_ok(rc) ? end : rc, nullptr, "all_gather_v", step_, deadline);
    join_and_wait(ctx, "all_gather_v", deadline);
  }

  void broadcast(const Context& ctx, void* data, int64_t count, DataType type, int root) override {
    check_count("broadcast", count, data);
    check_root(root, size());
    check_usable(ctx, "broadcast");
    ++stats_.broadcast;
    if (count == 0) {
      if (started_) join_and_wait(ctx, "broadcast", session_->deadline_for(step_));
      return;
    }
    const Deadline deadline = session_->deadline_for(step_);
    follow(ctx);
    settle(ncclBroadcast(data, data, static_cast<size_t>(count), nccl_type(type), root, comm_,
                         own_stream()),
           nullptr, "broadcast", step_, deadline);
    join_and_wait(ctx, "broadcast", deadline);
  }

  void barrier() override {
    session_->check_usable("barrier", step_);
    LOCKSTEP_CHECK(!started_,
                   "barrier: all_reduce_sum_start() sums are still open; call all_reduce_wait() "
                   "and a blocking collective first");
    ++stats_.barrier;
    session_->barrier(step_);
  }

  void settle_enqueued() noexcept override {
    if (!comm_) return;
    try {
      cudaSetDevice(device_.index);
      // `done_` again, recorded now: callers' streams that waited on it earlier keep their wait.
      LOCKSTEP_CUDA_CHECK(cudaEventRecord(done_, own_stream()));
      started_ = false;
      settle(ncclSuccess, done_, "unwinding (collectives already enqueued)", step_,
             session_->deadline_for(step_));
    } catch (...) {
      abort_nccl();  // settle() aborted already where it failed; a CUDA error may not have
    }
  }

  [[noreturn]] void abort(int exit_code) override {
    abort_nccl();
    session_->abort(exit_code);
  }

 private:
  static bool is_ok(ncclResult_t rc) { return rc == ncclSuccess || rc == ncclInProgress; }

  /// The communicator's stream: LOCKSTEP_SYNC_CHECK must not block the host on collectives
  /// (they are waited for against the deadline, in settle()).
  static ContextOptions own_options() {
    ContextOptions options;
    options.sync_check = false;
    return options;
  }

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

  cudaStream_t own_stream() const { return lockstep::detail::stream_of(own_); }

  /// Orders the communicator's stream after the work enqueued on ctx's stream so far.
  void follow(const Context& ctx) {
    LOCKSTEP_CUDA_CHECK(cudaEventRecord(work_, lockstep::detail::stream_of(ctx)));
    LOCKSTEP_CUDA_CHECK(cudaStreamWaitEvent(own_stream(), work_, 0));
  }
  /// Orders ctx's stream after everything enqueued on the communicator's stream so far.
  void join(const Context& ctx) {
    LOCKSTEP_CUDA_CHECK(cudaEventRecord(done_, own_stream()));
    LOCKSTEP_CUDA_CHECK(cudaStreamWaitEvent(lockstep::detail::stream_of(ctx), done_, 0));
    started_ = false;
  }
  /// join(), then waits on the host (against the deadline) until that work has run.
  void join_and_wait(const Context& ctx, const char* op, const Deadline& deadline) {
    join(ctx);
    settle(ncclSuccess, done_, op, step_, deadline);
  }

  /// Enqueues data[i] = Σ_r data[i] on the communicator's stream (rank order for F32).
  void enqueue_sum(void* data, int64_t count, DataType type, const Deadline& deadline) {
    cudaStream_t stream = own_stream();
    if (type != DataType::F32) {
      settle(ncclAllReduce(data, data, static_cast<size_t>(count), nccl_type(type), ncclSum, comm_,
                           stream),
             nullptr, "all_reduce", step_, deadline);
      return;
    }
    const int ranks = size(), me = rank();
    // Block boundaries on multiples of 64 floats (256 bytes): NCCL's fast paths want aligned
    // buffers. Who owns an element changes no bits: each is added in rank order on its owner.
    auto first = [&](int r) { return r == ranks ? count : count * r / ranks / 64 * 64; };
    const int64_t mine = first(me + 1) - first(me);
    auto* x = static_cast<float*>(data);
    auto* parts = static_cast<float*>(
        own_.workspace(static_cast<size_t>(std::max<int64_t>(ranks * mine, 1)) * sizeof(float)));
    // 1. Every rank's part of my block, rank r's at parts[r · mine].
    LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(parts + me * mine, x + first(me), mine * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
    ncclResult_t rc = ncclGroupStart();
    for (int r = 0; r < ranks && is_ok(rc); ++r) {
      if (r == me) continue;
      const int64_t theirs = first(r + 1) - first(r);
      if (theirs > 0)
        rc = ncclSend(x + first(r), static_cast<size_t>(theirs), ncclFloat32, r, comm_, stream);
      if (mine > 0 && is_ok(rc))
        rc = ncclRecv(parts + r * mine, static_cast<size_t>(mine), ncclFloat32, r, comm_, stream);
    }
    ncclResult_t end = ncclGroupEnd();
    settle(is_ok(rc) ? end : rc, nullptr, "all_reduce", step_, deadline);
    // 2. My block, added in rank order.
    kernels::sum_blocks<float>(own_, mine, ranks, parts, x + first(me));
    // 3. Every owner's block to every rank.
    rc = ncclGroupStart();
    for (int r = 0; r < ranks && is_ok(rc); ++r) {
      const int64_t n = first(r + 1) - first(r);
      if (n > 0)
        rc = ncclBroadcast(x + first(r), x + first(r), static_cast<size_t>(n), ncclFloat32, r,
                           comm_, stream);
    }
    end = ncclGroupEnd();
    settle(is_ok(rc) ? end : rc, nullptr, "all_reduce", step_, deadline);
  }

  /// After an NCCL call that returned `rc`: waits until NCCL has accepted the work and, with an
  /// event, until the event has completed. A failure or a missed deadline aborts the NCCL
  /// communicator, calls the roll over MPI and throws CommError.
  void settle(ncclResult_t rc, cudaEvent_t done, const char* op, int64_t step,
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
            if (!done) return 1;
            const cudaError_t state = lockstep::detail::query_event(done);
            if (state == cudaSuccess) return 1;
            if (state == cudaErrorNotReady) return 0;
            error = fmt::format("CUDA error {} ({})", cudaGetErrorName(state),
                                cudaGetErrorString(state));
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
  Context own_;  // the communicator's stream (and the workspace its sums use)
  cudaEvent_t work_ = nullptr, done_ = nullptr;
  bool started_ = false;  // all_reduce_sum_start() work not yet joined to a caller's stream
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

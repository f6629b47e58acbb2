// The MPI communicator: collectives on host memory, device buffers staged through pinned memory.
//
// all_reduce_sum does not use MPI_Allreduce. MPI does not promise a summation order (Open MPI's
// order changes with the rank count, the message size and even with MPI_IN_PLACE), so the sum is
// done here, in rank order: every rank owns a block of the buffer, receives that block from all
// ranks (MPI_Ialltoallv), adds the contributions as ((x0 + x1) + x2) + ..., and the owners'
// results are then all-gathered (MPI_Iallgatherv). Every element is therefore added in rank order
// on exactly one rank and copied to the others: identical bits everywhere, the same bits run to
// run, independent of MPI's algorithms and tuning. The traffic is that of a ring all-reduce
// (2 (P-1)/P of the buffer per rank). all_reduce_sum_start posts the first exchange of each
// piece and returns; all_reduce_wait (or the next collective) sums and posts the second: the
// same adds on the same ranks, so a bucket started early gets the bits of one call.
#include "lockstep/config.h"

#if LOCKSTEP_MPI_ENABLED

#include <algorithm>
#include <climits>
#include <cstring>

#include "comm/backends.h"
#include "comm/collective_args.h"
#include "comm/mpi_check.h"
#include "comm/mpi_session.h"
#include "lockstep/core/tensor.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep::comm::detail {
namespace {

/// all_reduce_sum works through the buffer in pieces of at most this many bytes: it bounds the
/// receive scratch and keeps MPI's int counts far from overflowing.
constexpr int64_t kPieceBytes = int64_t{64} << 20;
/// Element count limit of one MPI call (MPI counts are int).
constexpr int64_t kMaxMpiCount = int64_t{1} << 30;

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::F32:
      return MPI_FLOAT;
    case DataType::F64:
      return MPI_DOUBLE;
    case DataType::I64:
      return MPI_INT64_T;
    case DataType::U64:
      return MPI_UINT64_T;
    case DataType::U8:
      return MPI_UINT8_T;
  }
  LOCKSTEP_ASSERT(false);
}

/// out[i] = ((blocks[0][i] + blocks[1][i]) + blocks[2][i]) + ..., for `ranks` consecutive blocks
/// of n elements each.
template <class T>
void sum_in_rank_order(T* out, const T* blocks, int64_t n, int ranks) {
  std::copy(blocks, blocks + n, out);
  for (int r = 1; r < ranks; ++r) {
    const T* block = blocks + static_cast<int64_t>(r) * n;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(out[i] + block[i]);
  }
}

void sum_in_rank_order(DataType type, void* out, const void* blocks, int64_t n, int ranks) {
  switch (type) {
    case DataType::F32:
      return sum_in_rank_order(static_cast<float*>(out), static_cast<const float*>(blocks), n,
                               ranks);
    case DataType::F64:
      return sum_in_rank_order(static_cast<double*>(out), static_cast<const double*>(blocks), n,
                               ranks);
    case DataType::I64:  // two's complement: unsigned addition wraps like signed hardware adds
    case DataType::U64:
      return sum_in_rank_order(static_cast<uint64_t*>(out), static_cast<const uint64_t*>(blocks), n,
                               ranks);
    case DataType::U8:
      return sum_in_rank_order(static_cast<uint8_t*>(out), static_cast<const uint8_t*>(blocks), n,
                               ranks);
  }
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(std::unique_ptr<MpiSession> session) : session_(std::move(session)) {}

  ~MpiCommunicator() override {
#if LOCKSTEP_CUDA_ENABLED
    if (pinned_) cudaFreeHost(pinned_);
#endif
  }

  std::string backend() const override { return "mpi"; }
  int rank() const override { return session_->rank(); }
  int size() const override { return session_->size(); }
  int local_rank() const override { return session_->local_rank(); }

  void all_reduce_sum(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum", count, data);
    session_->check_usable("all_reduce", step_);
    complete_started();
    ++stats_.all_reduce;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
    reduce_now(ctx, data, count, type);
  }

  void all_reduce_sum_start(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum_start", count, data);
    session_->check_usable("all_reduce", step_);
    ++stats_.all_reduce_started;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
    if (ctx.is_cuda()) {
      // Staging through host memory waits for the device anyway: sum at once.
      complete_started();
      reduce_now(ctx, data, count, type);
      return;
    }
    if (count == 0 || size() == 1) return;
    const Deadline deadline = session_->deadline_for(step_);
    post_pieces(static_cast<unsigned char*>(data), count, type, deadline);
  }

  void all_reduce_wait(const Context&) override {
    session_->check_usable("all_reduce", step_);
    complete_started();
  }

  void all_gather_v(const Context& ctx, const void* send, void* recv,
                    const std::vector<int64_t>& counts, DataType type) override {
    const int64_t total = check_gather_counts(counts, size(), rank(), send, recv);
    LOCKSTEP_CHECK(total <= INT_MAX,
                   "all_gather_v: {} elements in total exceed what one MPI call can gather "
                   "({}); gather in several calls",
                   total, INT_MAX);
    session_->check_usable("all_gather_v", step_);
    complete_started();
    const size_t esize = data_type_size(type);
    ++stats_.all_gather;
    stats_.bytes_gathered += total * static_cast<int64_t>(esize);
    if (total == 0) return;
    const Deadline deadline = session_->deadline_for(step_);

    std::vector<int> recv_counts(counts.size()), displs(counts.size());
    for (size_t r = 0, offset = 0; r < counts.size();
         offset += static_cast<size_t>(counts[r]), ++r) {
      recv_counts[r] = static_cast<int>(counts[r]);
      displs[r] = static_cast<int>(offset);
    }
    const int me = rank();
    const size_t send_bytes = static_cast<size_t>(counts[static_cast<size_t>(me)]) * esize;
    const size_t recv_bytes = static_cast<size_t>(total) * esize;
    const void* send_host = send;
    void* recv_host = recv;
    bool in_place = send == static_cast<const unsigned char*>(recv) +
                                static_cast<size_t>(displs[static_cast<size_t>(me)]) * esize;
    if (ctx.is_cuda()) {
      auto* staging = static_cast<unsigned char*>(pinned(send_bytes + recv_bytes));
      copy_bytes(ctx, staging, Device::cpu(), send, ctx.device(), send_bytes);
      send_host = staging;
      recv_host = staging + send_bytes;
      in_place = false;
    }
    MPI_Request request;
    session_->check_posted(
        MPI_Iallgatherv(in_place ? MPI_IN_PLACE : send_host, recv_counts[static_cast<size_t>(me)],
                        mpi_type(type), recv_host, recv_counts.data(), displs.data(),
                        mpi_type(type), session_->comm(), &request),
        "all_gather_v", step_, deadline);
    session_->wait(&request, 1, "all_gather_v", step_, deadline);
    stage_out(ctx, recv, recv_host, recv_bytes);
  }

  void broadcast(const Context& ctx, void* data, int64_t count, DataType type, int root) override {
    check_count("broadcast", count, data);
    check_root(root, size());
    session_->check_usable("broadcast", step_);
    complete_started();
    ++stats_.broadcast;
    if (count == 0 || size() == 1) return;
    const Deadline deadline = session_->deadline_for(step_);
    const size_t esize = data_type_size(type);
    const size_t bytes = static_cast<size_t>(count) * esize;
    auto* host = static_cast<unsigned char*>(rank() == root ? stage_in(ctx, data, bytes)
                                                            : host_buffer(ctx, data, bytes));
    for (int64_t first = 0; first < count; first += kMaxMpiCount) {
      const int n = static_cast<int>(std::min(kMaxMpiCount, count - first));
      MPI_Request request;
      session_->check_posted(MPI_Ibcast(host + static_cast<size_t>(first) * esize, n,
                                        mpi_type(type), root, session_->comm(), &request),
                             "broadcast", step_, deadline);
      session_->wait(&request, 1, "broadcast", step_, deadline);
    }
    if (rank() != root) stage_out(ctx, data, host, bytes);
  }

  void barrier() override {
    session_->check_usable("barrier", step_);
    complete_started();
    ++stats_.barrier;
    session_->barrier(step_);
  }

  // Started sums still in flight would otherwise be completed by this communicator's next
  // collective, writing into buffers the unwinding caller may have freed by then.
  void settle_enqueued() noexcept override {
    if (started_ == 0) return;
    if (session_->failed()) {  // no collective of a failed session runs again
      started_ = 0;
      return;
    }
    try {
      complete_started();
    } catch (...) {
      started_ = 0;  // the session failed (CommError)
    }
  }

  [[noreturn]] void abort(int exit_code) override { session_->abort(exit_code); }

 private:
  /// A piece of a sum in flight (n elements at `data`, host memory): its exchange posted, the
  /// arrays MPI reads until it completes kept here.
  struct Piece {
    unsigned char* data = nullptr;
    int64_t n = 0;
    DataType type = DataType::F32;
    std::vector<int> block_counts, block_displs, mine_counts, mine_displs;
    std::vector<unsigned char> scratch;  // every rank's contribution to my block
    MPI_Request request = MPI_REQUEST_NULL;
  };

  /// all_reduce_sum's work after the checks: sums `count` elements at once.
  void reduce_now(const Context& ctx, void* data, int64_t count, DataType type) {
    if (count == 0 || size() == 1) return;
    const Deadline deadline = session_->deadline_for(step_);
    const size_t bytes = static_cast<size_t>(count) * data_type_size(type);
    auto* host = static_cast<unsigned char*>(stage_in(ctx, data, bytes));
    post_pieces(host, count, type, deadline);
    complete_pieces(deadline);
    stage_out(ctx, data, host, bytes);
  }

  /// Posts the first exchange of `count` elements at `data` (host memory), in pieces of at most
  /// kPieceBytes.
  void post_pieces(unsigned char* data, int64_t count, DataType type, const Deadline& deadline) {
    const int64_t esize = static_cast<int64_t>(data_type_size(type));
    const int64_t piece = kPieceBytes / esize;
    for (int64_t first = 0; first < count; first += piece)
      post_piece(data + first * esize, std::min(piece, count - first), type, deadline);
  }

  /// Rank r owns elements [first(r), first(r + 1)) of a piece: balanced, empty blocks allowed.
  /// Every rank's contribution to my block comes to me, in rank order.
  void post_piece(unsigned char* data, int64_t n, DataType type, const Deadline& deadline) {
    if (started_ == pieces_.size()) pieces_.emplace_back();  // kept: no allocation next step
    Piece& p = pieces_[started_];
    p.data = data;
    p.n = n;
    p.type = type;
    const int ranks = size(), me = rank();
    const int64_t esize = static_cast<int64_t>(data_type_size(type));
    auto first = [&](int r) { return n * r / ranks; };
    const int64_t mine = first(me + 1) - first(me);
    p.block_counts.resize(static_cast<size_t>(ranks));
    p.block_displs.resize(static_cast<size_t>(ranks));
    p.mine_counts.assign(static_cast<size_t>(ranks), static_cast<int>(mine * esize));
    p.mine_displs.resize(static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      const size_t i = static_cast<size_t>(r);
      p.block_counts[i] = static_cast<int>((first(r + 1) - first(r)) * esize);
      p.block_displs[i] = static_cast<int>(first(r) * esize);
      p.mine_displs[i] = static_cast<int>(r * mine * esize);
    }
    p.scratch.resize(static_cast<size_t>(ranks * mine * esize));
    session_->check_posted(
        MPI_Ialltoallv(data, p.block_counts.data(), p.block_displs.data(), MPI_BYTE,
                       p.scratch.data(), p.mine_counts.data(), p.mine_displs.data(), MPI_BYTE,
                       session_->comm(), &p.request),
        "all_reduce", step_, deadline);
    ++started_;
  }

  /// Completes the posted pieces, in the order posted: my block summed in rank order, then every
  /// owner's sum to every rank.
  void complete_pieces(const Deadline& deadline) {
    const int ranks = size(), me = rank();
    for (size_t k = 0; k < started_; ++k) {
      Piece& p = pieces_[k];
      session_->wait(&p.request, 1, "all_reduce", step_, deadline);
      const int64_t esize = static_cast<int64_t>(data_type_size(p.type));
      const int64_t first = p.n * me / ranks, mine = p.n * (me + 1) / ranks - first;
      sum_in_rank_order(p.type, p.data + first * esize, p.scratch.data(), mine, ranks);
      session_->check_posted(
          MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p.data, p.block_counts.data(),
                          p.block_displs.data(), MPI_BYTE, session_->comm(), &p.request),
          "all_reduce", step_, deadline);
    }
    for (size_t k = 0; k < started_; ++k)
      session_->wait(&pieces_[k].request, 1, "all_reduce", step_, deadline);
    started_ = 0;
  }

  /// Completes what all_reduce_sum_start() left in flight (before any other collective).
  void complete_started() {
    if (started_ > 0) complete_pieces(session_->deadline_for(step_));
  }

  /// Host memory holding `bytes` of `data` (data itself on the CPU, a pinned copy for CUDA).
  void* stage_in(const Context& ctx, void* data, size_t bytes) {
    if (ctx.is_cpu()) return data;
    void* host = pinned(bytes);
    copy_bytes(ctx, host, Device::cpu(), data, ctx.device(), bytes);  // waits for the copy
    return host;
  }
  /// Host memory of `bytes` to receive into (data itself on the CPU, pinned memory for CUDA).
  void* host_buffer(const Context& ctx, void* data, size_t bytes) {
    return ctx.is_cpu() ? data : pinned(bytes);
  }
  /// Copies a staged result back to the device (nothing to do on the CPU).
  void stage_out(const Context& ctx, void* data, const void* host, size_t bytes) {
    if (ctx.is_cpu()) return;
    copy_bytes(ctx, data, ctx.device(), host, Device::cpu(), bytes);  // waits for the copy
  }

  /// The pinned staging buffer, grown to at least `bytes`.
  void* pinned(size_t bytes) {
#if LOCKSTEP_CUDA_ENABLED
    if (bytes > pinned_bytes_) {
      // Grow by at least 1.5x so that slowly growing requests do not reallocate every step.
      const size_t grown = std::max(bytes, pinned_bytes_ + pinned_bytes_ / 2);
      if (pinned_) LOCKSTEP_CUDA_CHECK(cudaFreeHost(pinned_));
      pinned_ = nullptr;
      pinned_bytes_ = 0;
      LOCKSTEP_CUDA_CHECK(cudaMallocHost(&pinned_, grown));
      pinned_bytes_ = grown;
    }
    return pinned_;
#else
    throw Error("the mpi communicator was given a CUDA context but this build has no CUDA");
#endif
  }

  std::unique_ptr<MpiSession> session_;
  std::vector<Piece> pieces_;  // [0, started_) in flight
  size_t started_ = 0;
  void* pinned_ = nullptr;
  size_t pinned_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(std::unique_ptr<MpiSession> session) {
  return std::make_unique<MpiCommunicator>(std::move(session));
}

}  // namespace lockstep::comm::detail

#endif  // LOCKSTEP_MPI_ENABLED

// lockstep's CUDA emulator (docs/cuda_emulation.md): NCCL between the processes of one machine.
//
// A call enqueues its work (a group's calls as one operation) in stream order on the emulated
// device; when it runs, it first posts what this rank sends — each message a file, written
// under a temporary name and renamed, in a directory of /dev/shm named after the unique id — and
// then reads what it receives, waiting for the peers' files (up to LOCKSTEP_EMU_NCCL_TIMEOUT_S,
// default 300 s; then the communicator's asynchronous error becomes ncclRemoteError). A reader
// leaves a receipt; a message is deleted once every reader has left one. Operations of one
// communicator are numbered in the order they run, which NCCL requires to be the same on every
// rank. Reductions add in rank order, so every rank gets the same bits.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lockstep_emu/runtime.h"
#include "nccl.h"

struct ncclComm {
  std::string dir;
  int nranks = 0;
  int rank = 0;
  uint64_t seq = 0;  // operations run so far
  ncclResult_t async = ncclSuccess;
  std::string last_error;
  bool closed = false;
  struct Post {
    std::string path;
    std::vector<int> readers;
  };
  std::vector<Post> posts;  // this rank's messages not yet read by every reader
};

namespace {

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
  }
  return 0;
}

struct Op {
  enum Kind { AllReduce, Broadcast, Send, Recv } kind;
  const void* send;
  void* recv;
  size_t count;
  ncclDataType_t type;
  ncclRedOp_t red;
  int peer;  // the root of a broadcast, the peer of a send or receive
  ncclComm* comm;
  cudaStream_t stream;
  size_t bytes() const { return count * type_size(type); }
};

thread_local int t_group_depth = 0;
thread_local std::vector<Op> t_group;

double timeout_s() {
  const char* v = std::getenv("LOCKSTEP_EMU_NCCL_TIMEOUT_S");
  return v != nullptr && *v != '\0' ? std::atof(v) : 300.0;
}

std::string base_dir() {
  const char* v = std::getenv("LOCKSTEP_EMU_NCCL_DIR");
  if (v != nullptr && *v != '\0') return v;
  return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

void fail_comm(ncclComm* c, ncclResult_t rc, const std::string& why) {
  if (c->async == ncclSuccess) {
    c->async = rc;
    c->last_error = "emulated NCCL: " + why;
  }
}

bool write_file(const std::string& path, const void* data, size_t bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = write(fd, p + done, bytes - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  return done == bytes && rename(tmp.c_str(), path.c_str()) == 0;
}

std::string name(const ncclComm* c, uint64_t seq, const std::string& tag) {
  return c->dir + "/" + std::to_string(seq) + "." + tag;
}

void post(ncclComm* c, const std::string& path, const void* data, size_t bytes,
          std::vector<int> readers) {
  if (!write_file(path, data, bytes)) {
    fail_comm(c, ncclSystemError, "cannot write " + path);
    return;
  }
  c->posts.push_back({path, std::move(readers)});
}

// Waits for a peer's message, reads it into `out`, leaves a receipt.
bool fetch(ncclComm* c, const std::string& path, void* out, size_t bytes, int from) {
  const auto start = std::chrono::steady_clock::now();
  const double limit = timeout_s();
  int fd = -1;
  auto pause = std::chrono::microseconds(20);
  while ((fd = open(path.c_str(), O_RDONLY)) < 0) {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit) {
      fail_comm(c, ncclRemoteError,
                "rank " + std::to_string(from) + " sent nothing for " + path + " within " +
                    std::to_string(limit) + " s");
      return false;
    }
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(2)) pause *= 2;
  }
  struct stat st {};
  fstat(fd, &st);
  bool ok = static_cast<size_t>(st.st_size) == bytes;
  auto* p = static_cast<char*>(out);
  size_t done = 0;
  while (ok && done < bytes) {
    const ssize_t n = read(fd, p + done, bytes - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (!ok || done != bytes) {
    fail_comm(c, ncclInvalidUsage,
              "rank " + std::to_string(from) + " sent " + std::to_string(st.st_size) +
                  " bytes for " + path + ", this rank expects " + std::to_string(bytes) +
                  " (the ranks' calls differ)");
    return false;
  }
  const std::string receipt = path + ".r" + std::to_string(c->rank);
  const int r = open(receipt.c_str(), O_WRONLY | O_CREAT, 0600);
  if (r >= 0) close(r);
  return true;
}

// Deletes this rank's messages that every reader has read (all of them with `all`).
void collect(ncclComm* c, bool all) {
  std::vector<ncclComm::Post> kept;
  for (auto& p : c->posts) {
    bool read = true;
    for (int r : p.readers)
      if (access((p.path + ".r" + std::to_string(r)).c_str(), F_OK) != 0) read = false;
    if (!read && !all) {
      kept.push_back(std::move(p));
      continue;
    }
    unlink(p.path.c_str());
    for (int r : p.readers) unlink((p.path + ".r" + std::to_string(r)).c_str());
  }
  c->posts = std::move(kept);
}

template <class T>
void reduce_into(T* acc, const T* x, size_t n, ncclRedOp_t op) {
  for (size_t i = 0; i < n; ++i) {
    switch (op) {
      case ncclSum:
      case ncclAvg:
        acc[i] = acc[i] + x[i];
        break;
      case ncclProd:
        acc[i] = acc[i] * x[i];
        break;
      case ncclMax:
        acc[i] = acc[i] < x[i] ? x[i] : acc[i];
        break;
      case ncclMin:
        acc[i] = x[i] < acc[i] ? x[i] : acc[i];
        break;
    }
  }
}

bool reduce(void* acc, const void* x, const Op& op) {
  switch (op.type) {
    case ncclInt8:
      reduce_into(static_cast<int8_t*>(acc), static_cast<const int8_t*>(x), op.count, op.red);
      return true;
    case ncclUint8:
      reduce_into(static_cast<uint8_t*>(acc), static_cast<const uint8_t*>(x), op.count, op.red);
      return true;
    case ncclInt32:
      reduce_into(static_cast<int32_t*>(acc), static_cast<const int32_t*>(x), op.count, op.red);
      return true;
    case ncclUint32:
      reduce_into(static_cast<uint32_t*>(acc), static_cast<const uint32_t*>(x), op.count, op.red);
      return true;
    case ncclInt64:
      reduce_into(static_cast<int64_t*>(acc), static_cast<const int64_t*>(x), op.count, op.red);
      return true;
    case ncclUint64:
      reduce_into(static_cast<uint64_t*>(acc), static_cast<const uint64_t*>(x), op.count, op.red);
      return true;
    case ncclFloat32:
      reduce_into(static_cast<float*>(acc), static_cast<const float*>(x), op.count, op.red);
      return true;
    case ncclFloat64:
      reduce_into(static_cast<double*>(acc), static_cast<const double*>(x), op.count, op.red);
      return true;
    default:
      return false;
  }
}

// One group (or one call) of a communicator, run on the emulated device.
void run_group(const std::vector<Op>& ops) {
  ncclComm* c = ops.front().comm;
  if (c->closed || c->async != ncclSuccess) return;  // after a failure nothing runs
  const uint64_t seq = c->seq++;
  const int me = c->rank, n = c->nranks;
  collect(c, false);
  std::vector<int> others;
  for (int r = 0; r < n; ++r)
    if (r != me) others.push_back(r);
  // 1. Post everything this rank sends, so that no two ranks wait for each other.
  std::map<int, int> sends, recvs;  // per peer, the messages so far in this group
  for (size_t k = 0; k < ops.size(); ++k) {
    const Op& op = ops[k];
    const std::string kk = std::to_string(k);
    switch (op.kind) {
      case Op::AllReduce:
        post(c, name(c, seq, "ar" + kk + "." + std::to_string(me)), op.send, op.bytes(), others);
        break;
      case Op::Broadcast:
        if (me == op.peer) post(c, name(c, seq, "bc" + kk), op.send, op.bytes(), others);
        break;
      case Op::Send:
        post(c,
             name(c, seq,
                  "p2p." + std::to_string(me) + "." + std::to_string(op.peer) + "." +
                      std::to_string(sends[op.peer]++)),
             op.send, op.bytes(), {op.peer});
        break;
      case Op::Recv:
        break;
    }
  }
  // 2. Receive.
  for (size_t k = 0; k < ops.size() && c->async == ncclSuccess; ++k) {
    const Op& op = ops[k];
    const std::string kk = std::to_string(k);
    switch (op.kind) {
      case Op::AllReduce: {
        std::vector<char> acc(op.bytes()), part(op.bytes());
        for (int r = 0; r < n; ++r) {
          char* into = r == 0 ? acc.data() : part.data();
          if (r == me)
            std::memcpy(into, op.send, op.bytes());
          else if (!fetch(c, name(c, seq, "ar" + kk + "." + std::to_string(r)), into, op.bytes(),
                          r))
            return;
          if (r > 0 && !reduce(acc.data(), part.data(), op)) {
            fail_comm(c, ncclInvalidArgument, "no reduction for this data type");
            return;
          }
        }
        if (op.red == ncclAvg) {
          fail_comm(c, ncclInvalidArgument, "ncclAvg is not emulated");
          return;
        }
        std::memcpy(op.recv, acc.data(), op.bytes());
        break;
      }
      case Op::Broadcast:
        if (me == op.peer) {
          if (op.send != op.recv) std::memmove(op.recv, op.send, op.bytes());
        } else if (!fetch(c, name(c, seq, "bc" + kk), op.recv, op.bytes(), op.peer)) {
          return;
        }
        break;
      case Op::Recv:
        if (!fetch(c,
                   name(c, seq,
                        "p2p." + std::to_string(op.peer) + "." + std::to_string(me) + "." +
                            std::to_string(recvs[op.peer]++)),
                   op.recv, op.bytes(), op.peer))
          return;
        break;
      case Op::Send:
        break;
    }
  }
}

ncclResult_t submit(std::vector<Op> ops) {
  if (ops.empty()) return ncclSuccess;
  const cudaStream_t stream = ops.front().stream;
  for (const Op& op : ops)
    if (op.comm != ops.front().comm || op.stream != stream) return ncclInvalidUsage;
  const cudaError_t e =
      lockstep_emu::enqueue(stream, "nccl", [ops = std::move(ops)] { run_group(ops); });
  return e == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

ncclResult_t add(const Op& op) {
  ncclComm* c = op.comm;
  if (c == nullptr || c->closed) return ncclInvalidArgument;
  if (c->async != ncclSuccess) return c->async;
  if (type_size(op.type) == 0) return ncclInvalidArgument;
  if ((op.kind != Op::AllReduce) && (op.peer < 0 || op.peer >= c->nranks))
    return ncclInvalidArgument;
  const size_t bytes = op.bytes();
  const bool reads = op.kind == Op::AllReduce || op.kind == Op::Send ||
                     (op.kind == Op::Broadcast && op.peer == c->rank);
  if (reads) lockstep_emu::require_device(op.send, bytes, "NCCL send buffer");
  if (op.kind != Op::Send) lockstep_emu::require_device(op.recv, bytes, "NCCL receive buffer");
  if (t_group_depth > 0) {
    t_group.push_back(op);
    return ncclSuccess;
  }
  return submit({op});
}

}  // namespace

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  std::random_device rd;
  for (auto& b : id->internal) b = static_cast<char>(rd());
  id->internal[0] = 'L';  // never all zero
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t*) {
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  char hex[33];
  for (int i = 0; i < 16; ++i)
    std::snprintf(hex + 2 * i, 3, "%02x", static_cast<unsigned char>(id.internal[i]));
  auto* c = new ncclComm;
  c->dir = base_dir() + "/lockstep-emu-nccl-" + hex;
  c->nranks = nranks;
  c->rank = rank;
  if (mkdir(c->dir.c_str(), 0700) != 0 && errno != EEXIST) {
    delete c;
    return ncclSystemError;
  }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  return ncclCommInitRankConfig(comm, nranks, id, rank, nullptr);
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  (void)cudaDeviceSynchronize();  // outstanding operations complete (they may wait for peers)
  (void)cudaGetLastError();
  // Give the peers a moment to read this rank's last messages before they are deleted.
  for (int i = 0; i < 200 && !comm->posts.empty(); ++i) {
    collect(comm, false);
    if (!comm->posts.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return comm->async;
}

namespace {
ncclResult_t close_comm(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  collect(comm, true);
  rmdir(comm->dir.c_str());  // the last rank's succeeds
  comm->closed = true;       // kept: queued work may still name it
  return ncclSuccess;
}
}  // namespace

ncclResult_t ncclCommDestroy(ncclComm_t comm) { return close_comm(comm); }
ncclResult_t ncclCommAbort(ncclComm_t comm) { return close_comm(comm); }

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* state) {
  if (comm == nullptr) return ncclInvalidArgument;
  *state = comm->async;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
  }
  return "unknown result code";
}

const char* ncclGetLastError(ncclComm_t comm) {
  return comm != nullptr ? comm->last_error.c_str() : "";
}

ncclResult_t ncclGroupStart() {
  ++t_group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (t_group_depth == 0) return ncclInvalidUsage;
  if (--t_group_depth > 0) return ncclSuccess;
  std::vector<Op> ops;
  ops.swap(t_group);
  return submit(std::move(ops));
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  return add(Op{Op::AllReduce, send, recv, count, type, op, 0, comm, stream});
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  return add(Op{Op::Broadcast, send, recv, count, type, ncclSum, root, comm, stream});
}
ncclResult_t ncclSend(const void* send, size_t count, ncclDataType_t type, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return add(Op{Op::Send, send, nullptr, count, type, ncclSum, peer, comm, stream});
}
ncclResult_t ncclRecv(void* recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return add(Op{Op::Recv, nullptr, recv, count, type, ncclSum, peer, comm, stream});
}

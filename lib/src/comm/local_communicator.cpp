// The local communicator: one process, so every collective is a copy or nothing.
#include <cstdio>
#include <cstdlib>

#include "comm/backends.h"
#include "comm/collective_args.h"
#include "lockstep/core/tensor.h"

namespace lockstep::comm::detail {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  std::string backend() const override { return "local"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }

  void all_reduce_sum(const Context& ctx, void* data, int64_t count, DataType type) override {
    check_count("all_reduce_sum", count, data);
    ++stats_.all_reduce;
    stats_.bytes_all_reduced += count * static_cast<int64_t>(data_type_size(type));
  }

  void all_gather_v(const Context& ctx, const void* send, void* recv,
                    const std::vector<int64_t>& counts, DataType type) override {
    const int64_t total = check_gather_counts(counts, 1, 0, send, recv);
    ++stats_.all_gather;
    const size_t bytes = static_cast<size_t>(total) * data_type_size(type);
    stats_.bytes_gathered += static_cast<int64_t>(bytes);
    if (send != recv) copy_bytes(ctx, recv, ctx.device(), send, ctx.device(), bytes);
    ctx.synchronize();  // device-to-device copies are asynchronous; calls return complete
  }

  void broadcast(const Context& ctx, void* data, int64_t count, DataType type, int root) override {
    check_count("broadcast", count, data);
    check_root(root, 1);
    ++stats_.broadcast;
  }

  void barrier() override { ++stats_.barrier; }

  [[noreturn]] void abort(int exit_code) override {
    std::fflush(nullptr);
    std::_Exit(exit_code);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace lockstep::comm::detail

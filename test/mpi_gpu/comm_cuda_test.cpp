// Communicators on CUDA buffers across ranks: the mpi backend's pinned staging (ranks may share a
// GPU) and the nccl backend (one GPU per rank) — or, where ranks share a GPU, nccl's refusal.
#include <mpi.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "comm_test_util.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/config.h"
#include "lockstep/core/tensor.h"

using namespace lockstep;
using namespace lockstep::comm;
using namespace lockstep::test;
using Catch::Matchers::Contains;

namespace {

Device my_gpu() { return select_device("cuda", launcher_local_rank().first); }

/// True on every rank when every rank of this (single-node) job has a GPU of its own.
bool one_gpu_per_rank() {
  const auto [local_rank, local_size] = launcher_local_rank();
  int mine = local_size <= cuda_device_count() ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

std::unique_ptr<Communicator> make(const std::string& kind) {
  CommOptions options;
  options.timeout_s = 60;
  options.startup_timeout_s = 120;
  return create_communicator(kind, my_gpu(), options);
}

/// Runs the collectives on device buffers and checks them against host references: integer and
/// (for the mpi backend, whose order is rank order) float sums exactly; NCCL float sums within
/// tolerance and bitwise equal on every rank and from run to run.
void check_device_collectives(Communicator& comm) {
  Context ctx(my_gpu());
  const int ranks = comm.size(), me = comm.rank();
  comm.set_step(1);

  const int64_t n = 1000003;
  Tensor<int64_t> ints = make_tensor(ctx, inputs<int64_t>(61, me, n));
  comm.all_reduce_sum(ctx, ints.data(), n, DataType::I64);
  CHECK(first_difference(to_host(ctx, ints), rank_order_sum<int64_t>(61, ranks, n)) == -1);

  Tensor<float> floats = make_tensor(ctx, inputs<float>(62, me, n));
  comm.all_reduce_sum(ctx, floats.data(), n, DataType::F32);
  const std::vector<float> got = to_host(ctx, floats);
  const std::vector<float> expected = rank_order_sum<float>(62, ranks, n);
  if (comm.backend() == "mpi") {
    CHECK(first_difference(got, expected) == -1);
  } else {
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      double magnitude = 0;  // Σ |x_r|: the error bound of a float sum scales with it
      for (int r = 0; r < ranks; ++r)
        magnitude += std::abs(value_for<float>(62, r, static_cast<int64_t>(i)));
      bad += std::abs(static_cast<double>(got[i]) - expected[i]) > 1e-6 * magnitude;
    }
    CHECK(bad == 0);
  }
  CHECK(same_on_every_rank(hash_bytes(got)));
  Tensor<float> again = make_tensor(ctx, inputs<float>(62, me, n));
  comm.all_reduce_sum(ctx, again.data(), n, DataType::F32);
  CHECK(first_difference(to_host(ctx, again), got) == -1);

  std::vector<int64_t> counts;
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    counts.push_back(r == 0 ? 0 : 1000 + r);  // rank 0 sends nothing
    total += counts.back();
  }
  Tensor<double> send = make_tensor(ctx, inputs<double>(63, me, std::max<int64_t>(counts[me], 1)));
  Tensor<double> recv(ctx, {std::max<int64_t>(total, 1)});
  comm.all_gather_v(ctx, send.data(), recv.data(), counts, DataType::F64);
  std::vector<double> gathered;
  for (int r = 0; r < ranks; ++r) {
    const auto part = inputs<double>(63, r, counts[static_cast<size_t>(r)]);
    gathered.insert(gathered.end(), part.begin(), part.end());
  }
  if (total > 0) CHECK(first_difference(to_host(ctx, recv.data(), total), gathered) == -1);

  const int root = ranks - 1;
  Tensor<uint64_t> bcast = make_tensor(
      ctx, me == root ? inputs<uint64_t>(64, root, 4097) : std::vector<uint64_t>(4097, 0));
  comm.broadcast(ctx, bcast.data(), 4097, DataType::U64, root);
  CHECK(first_difference(to_host(ctx, bcast), inputs<uint64_t>(64, root, 4097)) == -1);
  comm.barrier();

  CHECK(comm.stats().all_reduce == 3);
  CHECK(comm.stats().all_gather == 1);
  CHECK(comm.stats().broadcast == 1);
  CHECK(comm.stats().barrier == 1);
}

}  // namespace

TEST_CASE("mpi communicator stages CUDA buffers through pinned memory", "[comm][cuda]") {
  auto comm = make("mpi");
  check_device_collectives(*comm);
}

TEST_CASE("nccl communicator on one GPU per rank, or a clear refusal", "[comm][cuda]") {
  if (!LOCKSTEP_NCCL_ENABLED) {
    CHECK_THROWS_WITH(make("nccl"), Contains("no NCCL") && Contains("--comm mpi"));
    return;
  }
  if (one_gpu_per_rank()) {
    auto comm = make("nccl");
    CHECK(comm->backend() == "nccl");
    check_device_collectives(*comm);
    // "auto" picks NCCL under any MPI launcher the library recognises (Open MPI or PMI).
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE");
    CHECK(make("auto")->backend() == (launched ? "nccl" : "local"));
  } else {
    CHECK_THROWS_WITH(make("nccl"), Contains("would share the GPU") && Contains("--comm mpi"));
    CHECK(make("auto")->backend() == "mpi");
  }
}

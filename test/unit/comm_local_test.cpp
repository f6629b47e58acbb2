// The local communicator (one process, no MPI), create_communicator's argument checks and the
// launcher environment.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/comm/communicator.h"
#include "lockstep/config.h"
#include "test_util.h"

using namespace lockstep;
using namespace lockstep::comm;
using Catch::Matchers::Contains;

namespace {

/// Sets (or, with nullopt, unsets) an environment variable for the lifetime of the object and
/// restores the previous state afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// Hides every launcher variable that create_communicator / launcher_local_rank look at.
struct NoLauncher {
  ScopedEnv a{"OMPI_COMM_WORLD_SIZE", std::nullopt}, b{"PMI_SIZE", std::nullopt},
      c{"OMPI_COMM_WORLD_LOCAL_RANK", std::nullopt}, d{"OMPI_COMM_WORLD_LOCAL_SIZE", std::nullopt},
      e{"MPI_LOCALRANKID", std::nullopt}, f{"MPI_LOCALNRANKS", std::nullopt};
};

}  // namespace

TEST_CASE("data_type_size is the size of the element type", "[comm]") {
  CHECK(data_type_size(DataType::F32) == sizeof(float));
  CHECK(data_type_size(DataType::F64) == sizeof(double));
  CHECK(data_type_size(DataType::I64) == sizeof(int64_t));
  CHECK(data_type_size(DataType::U64) == sizeof(uint64_t));
  CHECK(data_type_size(DataType::U8) == sizeof(uint8_t));
}

TEST_CASE("local communicator: one rank, collectives keep or copy the data", "[comm]") {
  NoLauncher no_launcher;
  Context ctx;
  auto comm = create_communicator("local", Device::cpu());
  CHECK(comm->backend() == "local");
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);
  CHECK(comm->local_rank() == 0);

  const std::vector<float> original = test::random_vector<float>(1001, 7);
  std::vector<float> data = original;
  comm->all_reduce_sum(ctx, data.data(), static_cast<int64_t>(data.size()), DataType::F32);
  test::require_bitwise_equal(data, original, "all_reduce_sum over one rank is the identity");

  std::vector<double> send = test::random_vector<double>(13, 8);
  std::vector<double> recv(13, -99.0);
  comm->all_gather_v(ctx, send.data(), recv.data(), {13}, DataType::F64);
  test::require_bitwise_equal(recv, send, "all_gather_v over one rank copies send to recv");

  std::vector<uint64_t> bytes = {1, 2, 3};
  comm->broadcast(ctx, bytes.data(), 3, DataType::U64, 0);
  CHECK(bytes == std::vector<uint64_t>{1, 2, 3});
  comm->barrier();
}

TEST_CASE("local communicator: every call is counted once, with its bytes", "[comm]") {
  Context ctx;
  auto comm = create_communicator("local", Device::cpu());
  std::vector<double> a(10, 1.0), b(10, 0.0);
  std::vector<uint8_t> c(5, 0);
  comm->all_reduce_sum(ctx, a.data(), 10, DataType::F64);
  comm->all_reduce_sum(ctx, c.data(), 5, DataType::U8);
  comm->all_reduce_sum(ctx, nullptr, 0, DataType::F32);
  comm->all_gather_v(ctx, a.data(), b.data(), {7}, DataType::F64);
  comm->broadcast(ctx, a.data(), 10, DataType::F64, 0);
  comm->broadcast(ctx, a.data(), 3, DataType::F64, 0);
  comm->barrier();
  comm->barrier();
  comm->barrier();
  const Communicator::Stats& s = comm->stats();
  CHECK(s.all_reduce == 3);
  CHECK(s.bytes_all_reduced == 10 * 8 + 5 * 1);
  CHECK(s.all_gather == 1);
  CHECK(s.bytes_gathered == 7 * 8);
  CHECK(s.broadcast == 2);
  CHECK(s.barrier == 3);
  // all_gather_v copied exactly the 7 counted elements.
  CHECK(b[6] == 1.0);
  CHECK(b[7] == 0.0);
}

TEST_CASE("local communicator: misuse is reported with the argument", "[comm]") {
  Context ctx;
  auto comm = create_communicator("local", Device::cpu());
  std::vector<float> v(4, 0.0f);
  CHECK_THROWS_WITH(comm->all_reduce_sum(ctx, v.data(), -1, DataType::F32),
                    Contains("count = -1 must not be negative"));
  CHECK_THROWS_WITH(comm->all_reduce_sum(ctx, nullptr, 4, DataType::F32), Contains("null pointer"));
  CHECK_THROWS_WITH(comm->all_gather_v(ctx, v.data(), v.data(), {2, 2}, DataType::F32),
                    Contains("2 counts given for 1 ranks"));
  CHECK_THROWS_WITH(comm->all_gather_v(ctx, v.data(), v.data(), {-3}, DataType::F32),
                    Contains("counts[0] = -3"));
  CHECK_THROWS_WITH(comm->broadcast(ctx, v.data(), 4, DataType::F32, 1),
                    Contains("root = 1 is not a rank"));
  CHECK(comm->stats().all_reduce == 0);
  CHECK(comm->stats().all_gather == 0);
  CHECK(comm->stats().broadcast == 0);
}

TEST_CASE("create_communicator: unknown kinds and bad timeouts are rejected", "[comm]") {
  NoLauncher no_launcher;
  CHECK_THROWS_WITH(
      create_communicator("gloo", Device::cpu()),
      Contains("--comm = 'gloo' is not a communicator: use auto, local, mpi or nccl"));
  CHECK_THROWS_WITH(create_communicator("", Device::cpu()), Contains("is not a communicator"));
  CommOptions zero;
  zero.timeout_s = 0;
  CHECK_THROWS_WITH(create_communicator("local", Device::cpu(), zero),
                    Contains("--comm-timeout = 0 s must be positive"));
  // NCCL on a CPU device is refused before anything starts, with the way out (which, in a build
  // without MPI, is a single process).
  if (LOCKSTEP_MPI_ENABLED)
    CHECK_THROWS_WITH(create_communicator("nccl", Device::cpu()), Contains("--comm mpi"));
  else
    CHECK_THROWS_WITH(create_communicator("nccl", Device::cpu()),
                      Contains("has no MPI") && Contains("--comm local"));
}

TEST_CASE("create_communicator: auto without a launcher is local", "[comm]") {
  NoLauncher no_launcher;
  CHECK(create_communicator("auto", Device::cpu())->backend() == "local");
  CHECK(create_communicator("auto", Device::cuda(0))->backend() == "local");
}

TEST_CASE("launcher_local_rank reads the launcher's environment", "[comm]") {
  NoLauncher no_launcher;
  CHECK(launcher_local_rank() == std::pair<int, int>{0, 1});
  {
    ScopedEnv rank("OMPI_COMM_WORLD_LOCAL_RANK", "3"), size("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    CHECK(launcher_local_rank() == std::pair<int, int>{3, 4});
  }
  {
    ScopedEnv rank("MPI_LOCALRANKID", "1"), size("MPI_LOCALNRANKS", "2");
    CHECK(launcher_local_rank() == std::pair<int, int>{1, 2});
  }
  {
    ScopedEnv rank("OMPI_COMM_WORLD_LOCAL_RANK", "x1"), size("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    CHECK_THROWS_WITH(launcher_local_rank(),
                      Contains("OMPI_COMM_WORLD_LOCAL_RANK = 'x1' is not a non-negative integer"));
  }
  {
    ScopedEnv rank("OMPI_COMM_WORLD_LOCAL_RANK", "4"), size("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    CHECK_THROWS_WITH(launcher_local_rank(), Contains("below the local size"));
  }
}

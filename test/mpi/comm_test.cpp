// The mpi communicator across ranks: exact sums in rank order, identical bits everywhere,
// variable-size gathers, broadcasts, barriers, statistics, and faults (a silent rank, a late one).
// Every rank runs every case; checks use CHECK (not REQUIRE) around collectives so that a failing
// rank keeps making the same calls as the others.
#include <mpi.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm_test_util.h"
#include "lockstep/comm/communicator.h"

using namespace lockstep;
using namespace lockstep::comm;
using namespace lockstep::test;
using Catch::Matchers::Contains;

namespace {

/// An mpi communicator whose deadlines end a broken test instead of hanging it.
std::unique_ptr<Communicator> make_mpi(double timeout_s = 60.0) {
  CommOptions options;
  options.timeout_s = timeout_s;
  options.startup_timeout_s = 60.0;
  return create_communicator("mpi", Device::cpu(), options);
}

template <class T>
void check_all_reduce(Communicator& comm, DataType type, int64_t n, uint64_t seed) {
  INFO("type size " << sizeof(T) << ", count " << n << ", " << comm.size() << " ranks");
  std::vector<T> data = inputs<T>(seed, comm.rank(), n);
  const Communicator::Stats before = comm.stats();
  Context ctx;
  comm.all_reduce_sum(ctx, data.data(), n, type);
  const std::vector<T> expected = rank_order_sum<T>(seed, comm.size(), n);
  const int64_t diff = first_difference(data, expected);
  INFO("first difference from the rank-order sum at index " << diff);
  CHECK(diff == -1);
  CHECK(same_on_every_rank(hash_bytes(data)));
  CHECK(comm.stats().all_reduce == before.all_reduce + 1);
  CHECK(comm.stats().bytes_all_reduced ==
        before.bytes_all_reduced + n * static_cast<int64_t>(sizeof(T)));
}

}  // namespace

TEST_CASE("mpi communicator: rank, size and local rank agree with MPI", "[comm]") {
  auto comm = make_mpi();
  CHECK(comm->backend() == "mpi");
  CHECK(comm->rank() == world_rank());
  CHECK(comm->size() == world_size());
  // All ranks of these tests run on one node: local ranks are the world ranks.
  CHECK(comm->local_rank() == world_rank());
  CHECK(launcher_local_rank() == std::pair<int, int>{world_rank(), world_size()});
}

TEST_CASE("all_reduce_sum adds in rank order: exact bits on every rank", "[comm]") {
  auto comm = make_mpi();
  for (int64_t n :
       {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{5}, int64_t{1000}, int64_t{1000003}}) {
    check_all_reduce<float>(*comm, DataType::F32, n, 11);
    check_all_reduce<double>(*comm, DataType::F64, n, 12);
    check_all_reduce<int64_t>(*comm, DataType::I64, n, 13);
    check_all_reduce<uint64_t>(*comm, DataType::U64, n, 14);
    check_all_reduce<uint8_t>(*comm, DataType::U8, n, 15);
  }
  // More than one 64 MiB piece of doubles.
  check_all_reduce<double>(*comm, DataType::F64, (int64_t{64} << 20) / 8 + 5, 16);
}

TEST_CASE("the float test data is sensitive to summation order", "[comm]") {
  // Guards the test above: with three or more ranks, summing the same data in reverse rank order
  // must give different bits somewhere, or that test could not detect a wrong order.
  const int ranks = world_size();
  if (ranks < 3) return;
  const int64_t n = 1000;
  const std::vector<float> forward = rank_order_sum<float>(11, ranks, n);
  std::vector<float> reverse = inputs<float>(11, ranks - 1, n);
  for (int r = ranks - 2; r >= 0; --r)
    for (int64_t i = 0; i < n; ++i) reverse[static_cast<size_t>(i)] += value_for<float>(11, r, i);
  CHECK(first_difference(forward, reverse) >= 0);
}

TEST_CASE("all_reduce_sum is deterministic: the same input gives the same bits", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  const int64_t n = 1000000;
  std::vector<float> first = inputs<float>(21, comm->rank(), n);
  std::vector<float> second = first;
  comm->all_reduce_sum(ctx, first.data(), n, DataType::F32);
  comm->all_reduce_sum(ctx, second.data(), n, DataType::F32);
  CHECK(first_difference(first, second) == -1);
  CHECK(same_on_every_rank(hash_bytes(first)));
  // The sum really happened: it differs from this rank's own contribution.
  CHECK(first_difference(first, inputs<float>(21, comm->rank(), n)) >= 0);
}

TEST_CASE("all_gather_v concatenates uneven contributions, zeros included", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  const int ranks = comm->size(), me = comm->rank();
  std::vector<std::vector<int64_t>> patterns;
  {
    std::vector<int64_t> by_rank, last_empty, all_empty(static_cast<size_t>(ranks), 0), large;
    for (int r = 0; r < ranks; ++r) {
      by_rank.push_back(r);  // rank 0 sends nothing
      last_empty.push_back(r == ranks - 1 ? 0 : 3 + 2 * r);
      large.push_back(250000 + r);
    }
    patterns = {by_rank, last_empty, all_empty, large};
  }
  for (const auto& counts : patterns) {
    for (bool in_place : {false, true}) {
      int64_t total = 0, offset = 0;
      for (int r = 0; r < ranks; ++r) {
        if (r < me) offset += counts[static_cast<size_t>(r)];
        total += counts[static_cast<size_t>(r)];
      }
      INFO("counts[0] = " << counts[0] << ", total " << total << ", in place " << in_place);
      const uint64_t seed = 31 + static_cast<uint64_t>(total);
      const std::vector<double> mine = inputs<double>(seed, me, counts[static_cast<size_t>(me)]);
      // Two sentinel elements past the end must survive.
      std::vector<double> recv(static_cast<size_t>(total) + 2, -12345.0);
      const double* send = mine.data();
      if (in_place) {
        std::copy(mine.begin(), mine.end(), recv.begin() + offset);
        send = recv.data() + offset;
      }
      const int64_t gathers = comm->stats().all_gather;
      comm->all_gather_v(ctx, send, recv.data(), counts, DataType::F64);
      CHECK(comm->stats().all_gather == gathers + 1);
      std::vector<double> expected;
      for (int r = 0; r < ranks; ++r) {
        const auto part = inputs<double>(seed, r, counts[static_cast<size_t>(r)]);
        expected.insert(expected.end(), part.begin(), part.end());
      }
      expected.push_back(-12345.0);
      expected.push_back(-12345.0);
      CHECK(first_difference(recv, expected) == -1);
    }
  }
}

TEST_CASE("all_gather_v of bytes from every rank", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  std::vector<int64_t> counts;
  for (int r = 0; r < comm->size(); ++r) counts.push_back(1 + (r % 2) * 6);
  const auto mine = inputs<uint8_t>(41, comm->rank(), counts[static_cast<size_t>(comm->rank())]);
  std::vector<uint8_t> recv(64, 0);
  comm->all_gather_v(ctx, mine.data(), recv.data(), counts, DataType::U8);
  size_t at = 0;
  int64_t wrong = 0;
  for (int r = 0; r < comm->size(); ++r)
    for (uint8_t v : inputs<uint8_t>(41, r, counts[static_cast<size_t>(r)]))
      wrong += recv[at++] != v;
  CHECK(wrong == 0);
}

TEST_CASE("broadcast copies the root's data to every rank", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  const int ranks = comm->size();
  for (int root : {ranks - 1, 1, 0}) {
    for (int64_t n : {int64_t{1}, int64_t{1000000}}) {
      INFO("root " << root << ", count " << n);
      const std::vector<float> expected = inputs<float>(51, root, n);
      std::vector<float> data =
          comm->rank() == root ? expected : std::vector<float>(static_cast<size_t>(n), -7.0f);
      comm->broadcast(ctx, data.data(), n, DataType::F32, root);
      CHECK(first_difference(data, expected) == -1);
    }
  }
  std::vector<uint64_t> one = {comm->rank() == 1 ? uint64_t{0xFEEDFACECAFEBEEF} : uint64_t{3}};
  comm->broadcast(ctx, one.data(), 1, DataType::U64, 1);
  CHECK(one[0] == 0xFEEDFACECAFEBEEFull);
  comm->broadcast(ctx, nullptr, 0, DataType::U64, 1);
  CHECK(comm->stats().broadcast == 3 * 2 + 2);
}

TEST_CASE("barrier waits for the last rank", "[comm]") {
  auto comm = make_mpi();
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = std::chrono::steady_clock::now();
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm->barrier();
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(waited >= 0.25);
  CHECK(comm->stats().barrier == 1);
}

TEST_CASE("started sums (buckets) give the bits of one all_reduce_sum, however they complete",
          "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  const int64_t n = 100003;
  const std::vector<float> expected = rank_order_sum<float>(21, comm->size(), n);
  // Three pieces of one buffer, started in order, then completed by all_reduce_wait, by the
  // next collective, or by settle_enqueued (unwinding: nothing may touch the buffer afterwards).
  for (int how = 0; how < 3; ++how) {
    INFO("completed by " << (how == 0   ? "all_reduce_wait"
                             : how == 1 ? "the next collective"
                                        : "settle_enqueued"));
    std::vector<float> data = inputs<float>(21, comm->rank(), n);
    const int64_t cut[] = {0, 7, 60000, n};
    for (int k = 0; k < 3; ++k)
      comm->all_reduce_sum_start(ctx, data.data() + cut[k], cut[k + 1] - cut[k], DataType::F32);
    double one = 1.0;
    if (how == 0) comm->all_reduce_wait(ctx);
    if (how == 1) comm->all_reduce_sum(ctx, &one, 1, DataType::F64);
    if (how == 2) comm->settle_enqueued();
    const std::vector<float> summed = data;
    data.assign(data.size(), -1.0f);
    comm->all_reduce_wait(ctx);  // nothing left in flight: the buffer stays as it is now
    comm->barrier();
    CHECK(first_difference(summed, expected) == -1);
    CHECK(data == std::vector<float>(data.size(), -1.0f));
    if (how == 1) CHECK(one == static_cast<double>(comm->size()));
  }
  CHECK(comm->stats().all_reduce_started == 9);
}

TEST_CASE("mpi communicator: every call is counted exactly once", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  std::vector<double> a(10, 1.0);
  std::vector<double> b(static_cast<size_t>(comm->size()) * 2, 0.0);
  comm->all_reduce_sum(ctx, a.data(), 10, DataType::F64);
  comm->all_reduce_sum(ctx, a.data(), 0, DataType::F64);
  comm->all_gather_v(ctx, a.data(), b.data(), std::vector<int64_t>(b.size() / 2, 2), DataType::F64);
  comm->broadcast(ctx, a.data(), 4, DataType::F64, 0);
  comm->barrier();
  const Communicator::Stats& s = comm->stats();
  CHECK(s.all_reduce == 2);
  CHECK(s.bytes_all_reduced == 80);
  CHECK(s.all_gather == 1);
  CHECK(s.bytes_gathered == static_cast<int64_t>(b.size()) * 8);
  CHECK(s.broadcast == 1);
  CHECK(s.barrier == 1);
  CHECK(a[0] == static_cast<double>(comm->size()));  // 1.0 from every rank
}

TEST_CASE("mpi communicator: misuse is reported on every rank before communicating", "[comm]") {
  auto comm = make_mpi();
  Context ctx;
  std::vector<float> v(8, 0.0f);
  CHECK_THROWS_WITH(comm->all_gather_v(ctx, v.data(), v.data(), {1}, DataType::F32),
                    Contains("1 counts given for " + std::to_string(comm->size()) + " ranks"));
  CHECK_THROWS_WITH(comm->broadcast(ctx, v.data(), 8, DataType::F32, comm->size()),
                    Contains("is not a rank"));
  CHECK_THROWS_WITH(comm->all_reduce_sum(ctx, v.data(), -2, DataType::F32),
                    Contains("must not be negative"));
  // Still usable afterwards.
  v.assign(8, 1.0f);
  comm->all_reduce_sum(ctx, v.data(), 8, DataType::F32);
  CHECK(v[7] == static_cast<float>(comm->size()));
}

TEST_CASE("a silent rank is named, with the step, soon after the deadline", "[comm][fault]") {
  auto comm = make_mpi(/*timeout_s=*/1.0);
  Context ctx;
  comm->set_step(4);
  std::vector<float> v(100, 1.0f);
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm->rank() == 0) {
    // Rank 0 neither calls the collective nor answers: longer than deadline + roll call.
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  } else {
    const auto start = std::chrono::steady_clock::now();
    bool thrown = false;
    try {
      comm->all_reduce_sum(ctx, v.data(), 100, DataType::F32);
    } catch (const CommError& e) {
      thrown = true;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      INFO(e.what() << " (after " << waited << " s)");
      // Either this rank's own deadline passed first ("timed out after 1.0 s") or another
      // survivor's roll call reached it first ("was abandoned after ..."): under load both occur.
      CHECK_THAT(e.what(), Contains("rank " + std::to_string(comm->rank()) +
                                    ": all_reduce at step 4 ") &&
                               (Contains("timed out after 1.0 s") || Contains("was abandoned")));
      CHECK_THAT(e.what(),
                 Contains("rank(s) 0 stopped answering (no roll-call reply within 1.0 s)"));
      CHECK(e.step() == 4);
      CHECK(e.silent_ranks() == std::vector<int>{0});
      // Deadline (1 s) plus the roll call's grace (1 s), plus slack for a loaded machine.
      CHECK(waited >= 1.5);  // not before the deadline (1 s) and a roll call
      CHECK(waited < 3.0);
      // The communicator refuses further use instead of hanging.
      CHECK_THROWS_WITH(comm->barrier(), Contains("unusable"));
    }
    CHECK(thrown);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("a late rank joins the roll call: nobody is silent", "[comm][fault]") {
  auto comm = make_mpi(/*timeout_s=*/1.0);
  Context ctx;
  comm->set_step(9);
  std::vector<double> v(10, 1.0);
  MPI_Barrier(MPI_COMM_WORLD);
  // Rank 0 arrives after the others' deadline but within their roll call (grace 1 s).
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  bool thrown = false;
  try {
    comm->all_reduce_sum(ctx, v.data(), 10, DataType::F64);
  } catch (const CommError& e) {
    thrown = true;
    INFO(e.what());
    CHECK(e.step() == 9);
    CHECK(e.silent_ranks().empty());
    if (comm->rank() == 0) {
      CHECK_THAT(e.what(), Contains("rank 0: all_reduce at step 9 was abandoned"));
      CHECK_THAT(e.what(), Contains("timed out and called the roll"));
    } else {
      // Its own deadline passed; or, on a loaded machine, another waiting rank's passed first
      // and that rank's roll call reached this one before its own deadline. Never rank 0's (it
      // came late): either way every rank answered.
      CHECK_THAT(e.what(),
                 Contains("timed out after 1.0 s") || Contains("timed out and called the roll"));
      CHECK_THAT(e.what(), !Contains("rank 0 timed out"));
      CHECK_THAT(e.what(), Contains("every rank answered the roll call"));
    }
  }
  CHECK(thrown);
  MPI_Barrier(MPI_COMM_WORLD);
}

// CUDA vs CPU pooled embedding lookup: forward and backward must agree bit for bit (the
// contract of kernels/embedding.h), including the unique ids and their count.

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "csr_batch.h"
#include "gpu_util.h"
#include "kernels/embedding.h"
#include "kernels/feasign.h"
#include "kernels/init.h"

using namespace lockstep;
using kernels::Pooling;
using test::CsrBatch;

namespace {

const char* pooling_name(Pooling p) { return p == Pooling::Sum ? "sum" : "mean"; }

struct LookupCase {
  Pooling pooling;
  int64_t dim, rows;
  int64_t ld;  // row stride of out and dout (>= dim)
};

// Runs forward and backward on both devices and requires identical bits. The GPU backward
// runs twice, sorting all 64 id bits and then only those of the rows: the same bits.
void require_lookup_parity(test::ParityContexts& pc, const LookupCase& c, const CsrBatch& csr,
                           uint64_t seed) {
  const int64_t batch = csr.batch(), nnz = csr.nnz(), dim = c.dim, ld = c.ld;
  INFO("pooling " << pooling_name(c.pooling) << " batch " << batch << " nnz " << nnz << " dim "
                  << dim << " rows " << c.rows << " ld " << ld);
  const auto table = test::random_vector<float>(c.rows * dim, seed);
  const auto d_table = test::to_gpu(pc.gpu, table);
  const auto d_offsets = test::to_gpu(pc.gpu, csr.offsets);
  const auto d_ids = test::to_gpu(pc.gpu, csr.ids);

  // Forward, into a wider matrix whose other columns hold a sentinel.
  const std::vector<float> sentinel(static_cast<size_t>(batch * ld), -333.0f);
  std::vector<float> out_cpu = sentinel;
  kernels::pooled_lookup_forward<float>(pc.cpu, c.pooling, batch, dim, table.data(), c.rows,
                                        csr.offsets.data(), csr.ids.data(), out_cpu.data(), ld);
  auto d_out = test::to_gpu(pc.gpu, sentinel);
  kernels::pooled_lookup_forward<float>(pc.gpu, c.pooling, batch, dim, d_table.data(), c.rows,
                                        d_offsets.data(), d_ids.data(), d_out.data(), ld);
  test::require_bitwise_equal(to_host(pc.gpu, d_out), out_cpu, "forward");
  if (nnz > 0 && dim > 0) CHECK(test::any_nonzero(out_cpu));

  // Backward.
  const auto dout = test::random_vector<float>(batch * ld, seed + 1);
  std::vector<uint64_t> unique_cpu(static_cast<size_t>(nnz));
  std::vector<float> grad_cpu(static_cast<size_t>(nnz * dim));
  int64_t num_unique_cpu = -1;
  kernels::pooled_lookup_backward<float>(pc.cpu, c.pooling, batch, dim, csr.offsets.data(),
                                         csr.ids.data(), nnz, dout.data(), ld, unique_cpu.data(),
                                         grad_cpu.data(), &num_unique_cpu);
  unique_cpu.resize(static_cast<size_t>(num_unique_cpu));
  grad_cpu.resize(static_cast<size_t>(num_unique_cpu * dim));

  // The keyed backward (a dynamic table's: its ids are positions among the distinct ids,
  // grouped by unique_keys) with two Sum-pooled side columns: CUDA = CPU, both made from the
  // ids on their own device.
  {
    const int64_t side_width = 2, ld_rows = side_width + dim + 1;
    const auto side = test::random_vector<float>(
        static_cast<size_t>(std::max<int64_t>(batch, 1) * side_width), seed + 2);
    const int64_t room = std::max<int64_t>(nnz, 1);
    std::vector<float> keyed[2];
    for (int on = 0; on < 2; ++on) {
      const Context& ctx = on == 0 ? pc.cpu : pc.gpu;
      auto ids = make_tensor(ctx, csr.ids);
      auto offsets = make_tensor(ctx, csr.offsets);
      auto d = make_tensor(ctx, dout);
      auto sd = make_tensor(ctx, side);
      Tensor<uint64_t> keys(ctx, {room});
      Tensor<int> order(ctx, {room});
      Tensor<int64_t> starts(ctx, {room + 1}), count(ctx, {1});
      Tensor<float> rows(ctx, {room, ld_rows});
      kernels::fill_constant<float>(ctx, room * ld_rows, -5.0f, rows.data());
      kernels::unique_keys<float>(ctx, nnz, room, ids.data(), keys.data(), count.data(),
                                  order.data(), starts.data());
      kernels::keyed_lookup_backward<float>(ctx, c.pooling, batch, dim, offsets.data(), nnz, false,
                                            order.data(), starts.data(), count.data(), d.data(), ld,
                                            side_width, sd.data(), rows.data(), ld_rows);
      REQUIRE(to_host(ctx, count)[0] == num_unique_cpu);
      keyed[on] = to_host(ctx, rows);
    }
    test::require_bitwise_equal(keyed[1], keyed[0], "keyed_lookup_backward");
    for (int64_t u = 0; u < num_unique_cpu; ++u)  // the gradient columns: the sort's bits
      for (int64_t j = 0; j < dim; ++j)
        REQUIRE(keyed[0][u * ld_rows + side_width + j] == grad_cpu[u * dim + j]);
  }

  const auto d_dout = test::to_gpu(pc.gpu, dout);
  Tensor<uint64_t> d_unique(pc.gpu, {nnz});
  Tensor<float> d_grad(pc.gpu, {nnz * dim});
  auto d_num_unique = test::to_gpu(pc.gpu, std::vector<int64_t>{-1});
  std::vector<float> first_grad;
  for (int run = 0; run < 2; ++run) {
    INFO("GPU run " << run);
    // Run 1 sorts only the bits the table's rows need: the same bits as all 64.
    kernels::pooled_lookup_backward<float>(pc.gpu, c.pooling, batch, dim, d_offsets.data(),
                                           d_ids.data(), nnz, d_dout.data(), ld, d_unique.data(),
                                           d_grad.data(), d_num_unique.data(),
                                           run == 0 ? 64 : kernels::id_bits_for(c.rows));
    const int64_t num_unique_gpu = to_host(pc.gpu, d_num_unique.data(), 1)[0];
    REQUIRE(num_unique_gpu == num_unique_cpu);
    test::require_bitwise_equal(to_host(pc.gpu, d_unique.data(), num_unique_gpu), unique_cpu,
                                "unique_ids");
    const auto grad_gpu = to_host(pc.gpu, d_grad.data(), num_unique_gpu * dim);
    test::require_bitwise_equal(grad_gpu, grad_cpu, "grad_rows");
    if (run == 0)
      first_grad = grad_gpu;
    else
      test::require_bitwise_equal(grad_gpu, first_grad, "grad_rows run-to-run");
  }
  if (num_unique_cpu > 0 && dim > 0) CHECK(test::any_nonzero(grad_cpu));
}

}  // namespace

TEST_CASE("CUDA pooled lookup is bitwise equal to the CPU for odd dims and small batches",
          "[gpu][embedding]") {
  test::ParityContexts pc;
  uint64_t seed = 1000;
  for (const int64_t batch : {int64_t{1}, int64_t{37}}) {
    for (const int64_t dim : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{33}, int64_t{128}}) {
      for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
        ++seed;
        const CsrBatch csr = test::random_csr(batch, 1000, 9, seed);  // empty bag when batch > 2
        for (const int64_t ld : {dim, dim + 5})
          require_lookup_parity(pc, {pooling, dim, 1000, ld}, csr, seed);
      }
    }
  }
}

TEST_CASE("CUDA pooled lookup handles batches without ids", "[gpu][embedding]") {
  test::ParityContexts pc;
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
    require_lookup_parity(pc, {pooling, 8, 10, 8}, test::csr_from_bags({{}, {}, {}, {}, {}}), 1);
    require_lookup_parity(pc, {pooling, 8, 10, 8}, CsrBatch{}, 2);  // batch 0
  }
}

TEST_CASE("CUDA pooled lookup with many duplicate ids", "[gpu][embedding]") {
  test::ParityContexts pc;
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
    // 3 rows, bags of up to 40 ids: every id appears hundreds of times, across and within bags.
    require_lookup_parity(pc, {pooling, 33, 3, 40}, test::random_csr(300, 3, 40, 11), 12);
    // One bag holding every position.
    require_lookup_parity(pc, {pooling, 5, 4, 5}, test::random_csr(1, 4, 5000, 13, 5000), 14);
  }
}

TEST_CASE("CUDA pooled lookup with hot ids: chunk and lane boundaries, a Zipf-popular id",
          "[gpu][embedding]") {
  test::ParityContexts pc;
  // Ids 0..7 appear n_i times (1, 32, 33, 64, 65, 1025, 1057, 100000 positions), in bags of up
  // to 7 ids, shuffled.
  std::vector<uint64_t> ids;
  const int64_t counts[] = {1, 32, 33, 64, 65, 1025, 1057, 100000};
  for (uint64_t id = 0; id < 8; ++id) ids.insert(ids.end(), counts[id], id);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(31));
  std::vector<std::vector<uint64_t>> bags;
  for (size_t j = 0; j < ids.size();) {
    const size_t len = std::min<size_t>(1 + j % 7, ids.size() - j);
    bags.emplace_back(ids.begin() + j, ids.begin() + j + len);
    j += len;
  }
  const CsrBatch csr = test::csr_from_bags(bags);
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean})
    for (const int64_t dim : {int64_t{1}, int64_t{16}, int64_t{33}})
      require_lookup_parity(pc, {pooling, dim, 8, dim}, csr, 32 + dim);
}

TEST_CASE("CUDA pooled lookup at benchmark scale", "[gpu][embedding][large]") {
  // din-bench shape: batch 4096, ~50 ids per bag, 1M rows, dim 16.
  test::ParityContexts pc;
  const CsrBatch csr = test::random_csr(4096, 1000000, 99, 21, 1);
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean})
    require_lookup_parity(pc, {pooling, 16, 1000000, 16}, csr, 22);
}

TEST_CASE("CUDA merge_sparse_rows is bitwise equal to the CPU and to the one-id-bag backward",
          "[gpu][embedding]") {
  test::ParityContexts pc;
  uint64_t seed = 3000;
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{77}, int64_t{5000}, int64_t{200000}}) {
    for (const int64_t dim : {int64_t{1}, int64_t{16}, int64_t{33}}) {
      for (const uint64_t id_range : {uint64_t{3}, uint64_t{1000}, uint64_t{1} << 40}) {
        ++seed;
        INFO("n " << n << " dim " << dim << " id range " << id_range);
        std::mt19937_64 rng(seed);
        std::uniform_int_distribution<uint64_t> id_dist(0, id_range - 1);
        std::vector<uint64_t> ids(static_cast<size_t>(n));
        for (auto& id : ids) id = id_dist(rng);
        const auto rows = test::random_vector<float>(static_cast<size_t>(n * dim), seed, -5, 5);

        std::vector<uint64_t> unique_cpu(static_cast<size_t>(n));
        std::vector<float> merged_cpu(static_cast<size_t>(n * dim));
        int64_t count_cpu = -1;
        kernels::merge_sparse_rows<float>(pc.cpu, n, dim, ids.data(), rows.data(),
                                          unique_cpu.data(), merged_cpu.data(), &count_cpu);
        unique_cpu.resize(static_cast<size_t>(count_cpu));
        merged_cpu.resize(static_cast<size_t>(count_cpu * dim));

        const auto d_ids = test::to_gpu(pc.gpu, ids);
        const auto d_rows = test::to_gpu(pc.gpu, rows);
        std::vector<int64_t> offsets(static_cast<size_t>(n + 1));
        for (int64_t i = 0; i <= n; ++i) offsets[i] = i;
        const auto d_offsets = test::to_gpu(pc.gpu, offsets);
        Tensor<uint64_t> d_unique(pc.gpu, {std::max<int64_t>(n, 1)});
        Tensor<float> d_merged(pc.gpu, {std::max<int64_t>(n * dim, 1)});
        auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{-1});
        for (int run = 0; run < 3; ++run) {
          INFO("GPU run " << run << (run == 2 ? " (pooled_lookup_backward)" : ""));
          if (run < 2) {
            kernels::merge_sparse_rows<float>(pc.gpu, n, dim, d_ids.data(), d_rows.data(),
                                              d_unique.data(), d_merged.data(), d_count.data());
          } else {
            kernels::pooled_lookup_backward<float>(
                pc.gpu, Pooling::Sum, n, dim, d_offsets.data(), d_ids.data(), n, d_rows.data(), dim,
                d_unique.data(), d_merged.data(), d_count.data());
          }
          const int64_t count_gpu = to_host(pc.gpu, d_count.data(), 1)[0];
          REQUIRE(count_gpu == count_cpu);
          test::require_bitwise_equal(to_host(pc.gpu, d_unique.data(), count_gpu), unique_cpu,
                                      "unique_ids");
          test::require_bitwise_equal(to_host(pc.gpu, d_merged.data(), count_gpu * dim), merged_cpu,
                                      "merged");
        }
      }
    }
  }
}

TEST_CASE("CUDA pooled lookup over a window of a larger CSR (offsets not starting at 0)",
          "[gpu][embedding]") {
  // Forward: the window's absolute offsets (offsets[0] > 0) into the ids of all fields, as a
  // field of a shared table reads its bags. Backward (whose offsets start at 0): the window
  // rebased, ids + offsets[first] and offsets - offsets[first], as a caller differentiates it.
  test::ParityContexts pc;
  const int64_t rows = 5000, dim = 16;
  const CsrBatch all = test::random_csr(700, rows, 12, 4001);
  const auto table = test::random_vector<float>(rows * dim, 4002);
  const auto d_table = test::to_gpu(pc.gpu, table);
  const auto d_offsets = test::to_gpu(pc.gpu, all.offsets);
  const auto d_ids = test::to_gpu(pc.gpu, all.ids);
  for (const auto& [first, batch] :
       std::vector<std::pair<int64_t, int64_t>>{{2, 698}, {100, 333}, {650, 50}, {699, 1}}) {
    for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
      INFO("window " << first << " + " << batch << " pooling " << pooling_name(pooling));
      const int64_t begin = all.offsets[first], nnz = all.offsets[first + batch] - begin;
      REQUIRE(begin > 0);
      const int64_t ld = dim + 3;
      const std::vector<float> sentinel(static_cast<size_t>(batch * ld), -333.0f);
      std::vector<float> out_cpu = sentinel;
      kernels::pooled_lookup_forward<float>(pc.cpu, pooling, batch, dim, table.data(), rows,
                                            all.offsets.data() + first, all.ids.data(),
                                            out_cpu.data(), ld);
      auto d_out = test::to_gpu(pc.gpu, sentinel);
      kernels::pooled_lookup_forward<float>(pc.gpu, pooling, batch, dim, d_table.data(), rows,
                                            d_offsets.data() + first, d_ids.data(), d_out.data(),
                                            ld);
      test::require_bitwise_equal(to_host(pc.gpu, d_out), out_cpu, "forward over a window");
      CHECK(test::any_nonzero(out_cpu));

      std::vector<int64_t> rebased(all.offsets.begin() + first,
                                   all.offsets.begin() + first + batch + 1);
      for (auto& o : rebased) o -= begin;
      const auto d_rebased = test::to_gpu(pc.gpu, rebased);
      const auto dout = test::random_vector<float>(batch * ld, 4003 + first);
      std::vector<uint64_t> unique_cpu(static_cast<size_t>(nnz));
      std::vector<float> grad_cpu(static_cast<size_t>(nnz * dim));
      int64_t count_cpu = -1;
      kernels::pooled_lookup_backward<float>(pc.cpu, pooling, batch, dim, rebased.data(),
                                             all.ids.data() + begin, nnz, dout.data(), ld,
                                             unique_cpu.data(), grad_cpu.data(), &count_cpu);
      unique_cpu.resize(static_cast<size_t>(count_cpu));
      grad_cpu.resize(static_cast<size_t>(count_cpu * dim));
      const auto d_dout = test::to_gpu(pc.gpu, dout);
      Tensor<uint64_t> d_unique(pc.gpu, {nnz});
      Tensor<float> d_grad(pc.gpu, {nnz * dim});
      auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{-1});
      kernels::pooled_lookup_backward<float>(pc.gpu, pooling, batch, dim, d_rebased.data(),
                                             d_ids.data() + begin, nnz, d_dout.data(), ld,
                                             d_unique.data(), d_grad.data(), d_count.data());
      const int64_t count_gpu = to_host(pc.gpu, d_count.data(), 1)[0];
      REQUIRE(count_gpu == count_cpu);
      test::require_bitwise_equal(to_host(pc.gpu, d_unique.data(), count_gpu), unique_cpu,
                                  "unique_ids of the window");
      test::require_bitwise_equal(to_host(pc.gpu, d_grad.data(), count_gpu * dim), grad_cpu,
                                  "grad_rows of the window");
    }
  }
}

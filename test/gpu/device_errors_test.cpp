// Invalid input on CUDA fails as the CPU does: ids past the table, CSR offsets that are not a CSR
// and row counts past their bound give the CPU reference's exact message (recorded on the
// device, thrown by the next to_host() or check_device_errors()), nothing is written outside the
// buffers (guard rows past every table, state and output stay bitwise intact), and the record is
// reset once reported, so the next valid call works.

#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "csr_batch.h"
#include "gpu_util.h"
#include "kernels/control.h"
#include "kernels/embedding.h"
#include "kernels/feasign.h"
#include "kernels/init.h"
#include "kernels/input_errors.h"
#include "kernels/key_index.h"
#include "kernels/optimizer.h"

using namespace lockstep;
using kernels::AdagradHyper;
using kernels::AdamHyper;
using kernels::Pooling;

namespace {

constexpr float kGuard = -777.0f;  // the value of every guard element

// A device copy of `valid` followed by `guard` elements of kGuard: writes past the valid part
// show up as changed guards.
Tensor<float> with_guard(const Context& gpu, std::vector<float> valid, size_t guard) {
  valid.insert(valid.end(), guard, kGuard);
  return test::to_gpu(gpu, valid);
}

// ---- Forward.

struct ForwardCase {
  const char* what;
  std::vector<int64_t> offsets;  // batch + 1
  std::vector<uint64_t> ids;
};

// The CPU and the GPU forward on one bad case: the same message, nothing written outside `out`
// (guard rows after it) and nothing written to the table; then the record is empty and a valid
// call on the same context is bitwise equal to the CPU.
void require_forward_error(test::ParityContexts& pc, const ForwardCase& c, bool via_to_host) {
  INFO(c.what);
  const int64_t rows = 20, dim = 7, batch = static_cast<int64_t>(c.offsets.size()) - 1;
  const int64_t guard_rows = 2;
  const auto table = test::random_vector<float>(rows * dim, 31);
  const auto d_table = with_guard(pc.gpu, table, guard_rows * dim);

  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
    std::vector<float> out_cpu(batch * dim, 0.0f);
    const std::string expected = test::error_of([&] {
      kernels::pooled_lookup_forward<float>(pc.cpu, pooling, batch, dim, table.data(), rows,
                                            c.offsets.data(), c.ids.data(), out_cpu.data(), dim);
    });
    const auto d_offsets = test::to_gpu(pc.gpu, c.offsets);
    const auto d_ids = test::to_gpu(pc.gpu, c.ids);
    auto d_out = with_guard(pc.gpu, std::vector<float>(batch * dim, 0.0f), guard_rows * dim);
    kernels::pooled_lookup_forward<float>(pc.gpu, pooling, batch, dim, d_table.data(), rows,
                                          d_offsets.data(), d_ids.data(), d_out.data(), dim);
    if (via_to_host)
      REQUIRE_THROWS_WITH(to_host(pc.gpu, d_out), expected);
    else
      REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
    pc.gpu.check_device_errors();  // reported once, then reset

    const auto out = to_host(pc.gpu, d_out);
    test::require_bitwise_equal(std::vector<float>(out.begin() + batch * dim, out.end()),
                                std::vector<float>(guard_rows * dim, kGuard), "guard rows of out");
    const auto table_after = to_host(pc.gpu, d_table);
    test::require_bitwise_equal(
        std::vector<float>(table_after.begin(), table_after.begin() + rows * dim), table, "table");
  }

  // The next valid call on the same context.
  const test::CsrBatch good = test::csr_from_bags({{3, 19, 5}, {}, {0, 0}});
  std::vector<float> out_cpu(3 * dim);
  kernels::pooled_lookup_forward<float>(pc.cpu, Pooling::Mean, 3, dim, table.data(), rows,
                                        good.offsets.data(), good.ids.data(), out_cpu.data(), dim);
  const auto d_offsets = test::to_gpu(pc.gpu, good.offsets);
  const auto d_ids = test::to_gpu(pc.gpu, good.ids);
  Tensor<float> d_out(pc.gpu, {3 * dim});
  kernels::pooled_lookup_forward<float>(pc.gpu, Pooling::Mean, 3, dim, d_table.data(), rows,
                                        d_offsets.data(), d_ids.data(), d_out.data(), dim);
  test::require_bitwise_equal(to_host(pc.gpu, d_out), out_cpu, "valid call after the error");
}

}  // namespace

TEST_CASE("CUDA pooled lookup forward reports bad ids and offsets with the CPU's message",
          "[gpu][embedding][errors]") {
  test::ParityContexts pc;
  const uint64_t huge = uint64_t{1} << 63;
  const std::vector<ForwardCase> cases = {
      {"one id past the table", {0, 3, 4, 4, 8}, {3, 20, 5, 7, 1, 2, 0, 19}},
      {"several bad ids: the first position is named",
       {0, 3, 4, 4, 8},
       {3, 5, 5, 7, 1, 25, 20, huge}},
      {"an id of 2^63", {0, 1, 2}, {4, huge}},
      {"every id bad", {0, 2, 4}, {20, 21, 22, 23}},
      {"offsets[0] < 0", {-1, 2, 3}, {1, 2, 3}},
      {"decreasing offsets", {0, 3, 1, 4}, {1, 2, 3, 4}},
      {"decreasing offsets, then a negative one", {0, 5, -3, 2}, {1, 2}},
      {"a bag past offsets[batch], the length of ids", {0, 5, 3}, {1, 2, 3}},
      {"bad offsets and a bad id: the offsets are checked first", {0, 2, 1, 3}, {40, 1, 2}},
      {"two decreasing pairs: the first sample is named", {0, 4, 2, 3, 1}, {1, 2, 3, 4}},
  };
  for (const auto& c : cases) {
    require_forward_error(pc, c, /*via_to_host=*/false);
    require_forward_error(pc, c, /*via_to_host=*/true);
  }
}

TEST_CASE("CUDA pooled lookup forward checks ids for dim 0 too", "[gpu][embedding][errors]") {
  test::ParityContexts pc;
  const std::vector<int64_t> offsets = {0, 2};
  const std::vector<uint64_t> ids = {1, 9};
  const std::vector<float> table = {0.0f};
  float out = 0.0f;
  const std::string expected = test::error_of([&] {
    kernels::pooled_lookup_forward<float>(pc.cpu, Pooling::Sum, 1, 0, table.data(), 5,
                                          offsets.data(), ids.data(), &out, 0);
  });
  const auto d_offsets = test::to_gpu(pc.gpu, offsets);
  const auto d_ids = test::to_gpu(pc.gpu, ids);
  const auto d_table = test::to_gpu(pc.gpu, table);
  Tensor<float> d_out(pc.gpu, {1});
  kernels::pooled_lookup_forward<float>(pc.gpu, Pooling::Sum, 1, 0, d_table.data(), 5,
                                        d_offsets.data(), d_ids.data(), d_out.data(), 0);
  REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
}

TEST_CASE("CUDA row kernels of dynamic tables report bad rows with the CPU's message",
          "[gpu][feasign][errors]") {
  test::ParityContexts pc;
  const int64_t rows = 6, dim = 3;
  const auto table = test::random_vector<float>(rows * dim, 5);
  const std::vector<int64_t> index = {2, -1, 7, 9};  // 7 is the first bad one (-1: zeros)
  const std::vector<int64_t> slots = {0, 6, 3};
  const std::vector<uint64_t> keys = {11, 12, 13};
  const std::vector<int64_t> offsets = {0, 1, 3, 4};  // 3 samples, 1 bag each
  const std::vector<uint64_t> ids = {1, 2, 6, 8};
  // Each op on both contexts: the CPU's message, then a valid call on the same GPU context.
  const auto check = [&](const char* what, const std::function<void(const Context&, float*)>& op) {
    INFO(what);
    std::vector<float> cpu_table = table;
    const std::string expected = test::error_of([&] { op(pc.cpu, cpu_table.data()); });
    REQUIRE_FALSE(expected.empty());
    auto d_table = with_guard(pc.gpu, table, 2 * dim);
    op(pc.gpu, d_table.data());
    REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
    const auto after = to_host(pc.gpu, d_table);  // reported once: no throw here
    test::require_bitwise_equal(std::vector<float>(after.begin() + rows * dim, after.end()),
                                std::vector<float>(2 * dim, kGuard), "guard rows");
  };
  const auto d_index = test::to_gpu(pc.gpu, index);
  const auto d_slots = test::to_gpu(pc.gpu, slots);
  const auto d_keys = test::to_gpu(pc.gpu, keys);
  const auto d_offsets = test::to_gpu(pc.gpu, offsets);
  const auto d_ids = test::to_gpu(pc.gpu, ids);
  const auto on = [&](const Context& ctx, const auto& host, const auto& device) {
    return ctx.is_cpu() ? host.data() : device.data();
  };
  check("gather_rows", [&](const Context& ctx, float* t) {
    Tensor<float> out(ctx, {4 * dim});
    kernels::gather_rows<float>(ctx, 4, dim, t, dim, rows, on(ctx, index, d_index), out.data(),
                                dim);
  });
  check("fill_rows", [&](const Context& ctx, float* t) {
    kernels::fill_rows<float>(ctx, 2, dim, on(ctx, index, d_index) + 2, 0.5f, t, dim, rows);
  });
  check("feasign_init_rows", [&](const Context& ctx, float* t) {
    kernels::feasign_init_rows<float>(ctx, 3, dim, on(ctx, keys, d_keys), on(ctx, slots, d_slots),
                                      1, 2, 0.1f, t, rows);
  });
  check("wide_lookup_forward", [&](const Context& ctx, float* t) {
    Tensor<float> out(ctx, {3});
    kernels::fill_constant<float>(ctx, 3, 0.0f, out.data());
    kernels::wide_lookup_forward<float>(ctx, 3, 1, on(ctx, offsets, d_offsets), on(ctx, ids, d_ids),
                                        t, rows, out.data());
  });
}

TEST_CASE("CUDA pooled lookup backward reports bad offsets with the CPU's message",
          "[gpu][embedding][errors]") {
  test::ParityContexts pc;
  struct Case {
    const char* what;
    std::vector<int64_t> offsets;
    int64_t nnz;
  };
  const std::vector<Case> cases = {
      {"offsets[0] != 0", {1, 2, 4}, 4},
      {"decreasing offsets", {0, 3, 1, 4}, 4},
      {"offsets[batch] != nnz", {0, 1, 3}, 4},
      {"offsets[batch] > nnz", {0, 1, 6}, 4},
      {"all three: offsets[0] is named", {2, 1, 5}, 4},
      {"decreasing and a wrong end: the decreasing pair is named", {0, 3, 1}, 4},
      {"no ids: decreasing offsets", {0, 0, -1, 0}, 0},
      {"no ids: offsets[batch] != 0", {0, 0, 1}, 0},
  };
  const int64_t dim = 5, guard = 3;
  for (const auto& c : cases) {
    INFO(c.what);
    const int64_t batch = static_cast<int64_t>(c.offsets.size()) - 1;
    std::vector<uint64_t> ids;
    for (int64_t j = 0; j < c.nnz; ++j) ids.push_back(static_cast<uint64_t>(7 * j % 5));
    const auto dout = test::random_vector<float>(batch * dim, 41);
    for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
      std::vector<uint64_t> unique_cpu(c.nnz + 1);
      std::vector<float> grad_cpu((c.nnz + 1) * dim);
      int64_t count_cpu = 0;
      const std::string expected = test::error_of([&] {
        kernels::pooled_lookup_backward<float>(pc.cpu, pooling, batch, dim, c.offsets.data(),
                                               ids.data(), c.nnz, dout.data(), dim,
                                               unique_cpu.data(), grad_cpu.data(), &count_cpu);
      });
      const auto d_offsets = test::to_gpu(pc.gpu, c.offsets);
      const auto d_ids = test::to_gpu(pc.gpu, ids.empty() ? std::vector<uint64_t>{0} : ids);
      const auto d_dout = test::to_gpu(pc.gpu, dout);
      auto d_unique = test::to_gpu(pc.gpu, std::vector<uint64_t>(c.nnz + guard, ~uint64_t{0}));
      auto d_grad = with_guard(pc.gpu, {}, (c.nnz + guard) * dim);
      auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{-1, -1});
      kernels::pooled_lookup_backward<float>(pc.gpu, pooling, batch, dim, d_offsets.data(),
                                             d_ids.data(), c.nnz, d_dout.data(), dim,
                                             d_unique.data(), d_grad.data(), d_count.data());
      REQUIRE_THROWS_WITH(to_host(pc.gpu, d_count), expected);
      pc.gpu.check_device_errors();  // reset
      // Nothing written past nnz unique ids and rows, nor past the one count.
      const auto unique = to_host(pc.gpu, d_unique);
      test::require_bitwise_equal(std::vector<uint64_t>(unique.begin() + c.nnz, unique.end()),
                                  std::vector<uint64_t>(guard, ~uint64_t{0}), "unique guard");
      const auto grad = to_host(pc.gpu, d_grad);
      test::require_bitwise_equal(std::vector<float>(grad.begin() + c.nnz * dim, grad.end()),
                                  std::vector<float>(guard * dim, kGuard), "grad guard");
      CHECK(to_host(pc.gpu, d_count)[1] == -1);
    }
  }

  // The next valid call: bitwise equal to the CPU.
  const test::CsrBatch good = test::csr_from_bags({{1, 4, 1}, {}, {3}});
  const auto dout = test::random_vector<float>(3 * dim, 42);
  std::vector<uint64_t> unique_cpu(4);
  std::vector<float> grad_cpu(4 * dim);
  int64_t count_cpu = 0;
  kernels::pooled_lookup_backward<float>(pc.cpu, Pooling::Mean, 3, dim, good.offsets.data(),
                                         good.ids.data(), 4, dout.data(), dim, unique_cpu.data(),
                                         grad_cpu.data(), &count_cpu);
  const auto d_offsets = test::to_gpu(pc.gpu, good.offsets);
  const auto d_ids = test::to_gpu(pc.gpu, good.ids);
  const auto d_dout = test::to_gpu(pc.gpu, dout);
  Tensor<uint64_t> d_unique(pc.gpu, {4});
  Tensor<float> d_grad(pc.gpu, {4 * dim});
  Tensor<int64_t> d_count(pc.gpu, {1});
  kernels::pooled_lookup_backward<float>(pc.gpu, Pooling::Mean, 3, dim, d_offsets.data(),
                                         d_ids.data(), 4, d_dout.data(), dim, d_unique.data(),
                                         d_grad.data(), d_count.data());
  REQUIRE(to_host(pc.gpu, d_count)[0] == count_cpu);
  grad_cpu.resize(count_cpu * dim);
  test::require_bitwise_equal(to_host(pc.gpu, d_grad.data(), count_cpu * dim), grad_cpu,
                              "valid backward after the error");
}

namespace {

// ---- Sparse optimizers, over a table of `rows` rows followed by guard rows.

constexpr int64_t kRows = 10, kGuardRows = 3, kMaxUnique = 6;

struct Tables {
  std::vector<float> table, accum, m, v;  // rows + guard rows each
};

Tables initial_tables(int64_t dim) {
  Tables t{test::random_vector<float>(kRows * dim, 51),
           test::random_vector<float>(kRows, 52, 0.0, 0.5),
           test::random_vector<float>(kRows * dim, 53, -0.1, 0.1),
           test::random_vector<float>(kRows * dim, 54, 0.0, 0.1)};
  t.table.insert(t.table.end(), kGuardRows * dim, kGuard);
  t.accum.insert(t.accum.end(), kGuardRows, kGuard);
  t.m.insert(t.m.end(), kGuardRows * dim, kGuard);
  t.v.insert(t.v.end(), kGuardRows * dim, kGuard);
  return t;
}

struct DeviceTables {
  Tensor<float> table, accum, m, v;
  DeviceTables(const Context& gpu, const Tables& t)
      : table(test::to_gpu(gpu, t.table)),
        accum(test::to_gpu(gpu, t.accum)),
        m(test::to_gpu(gpu, t.m)),
        v(test::to_gpu(gpu, t.v)) {}
  Tables to_host(const Context& gpu) const {
    return {lockstep::to_host(gpu, table), lockstep::to_host(gpu, accum), lockstep::to_host(gpu, m),
            lockstep::to_host(gpu, v)};
  }
};

// Rows of `after` listed in `rows_to_check` (of width `width`) are bitwise those of `before`.
void require_rows_unchanged(const std::vector<float>& before, const std::vector<float>& after,
                            int64_t width, const std::vector<int64_t>& rows_to_check,
                            const std::string& what) {
  for (const int64_t r : rows_to_check) {
    INFO(what << " row " << r);
    test::require_bitwise_equal(
        std::vector<float>(after.begin() + r * width, after.begin() + (r + 1) * width),
        std::vector<float>(before.begin() + r * width, before.begin() + (r + 1) * width), what);
  }
}

void require_all_unchanged(const Tables& before, const Tables& after, const std::string& what) {
  test::require_bitwise_equal(after.table, before.table, what + ": table");
  test::require_bitwise_equal(after.accum, before.accum, what + ": accum");
  test::require_bitwise_equal(after.m, before.m, what + ": m");
  test::require_bitwise_equal(after.v, before.v, what + ": v");
}

// One sparse Adagrad and one sparse Adam update on `ctx` (Adagrad on table/accum, Adam on
// table/m/v: the table takes both, which is fine for these checks).
void update(const Context& ctx, int64_t dim, const int64_t* count, const uint64_t* ids,
            const float* grad, float* table, float* accum, float* m, float* v, bool adam) {
  AdagradHyper adagrad;
  adagrad.lr = 0.1f;
  AdamHyper h;
  h.lr = 0.01f;
  if (adam)
    kernels::sparse_adam_update<float>(ctx, h, 1, 0.5f, dim, count, kMaxUnique, ids, grad, table,
                                       kRows, m, v);
  else
    kernels::sparse_adagrad_update<float>(ctx, adagrad, 0.5f, dim, count, kMaxUnique, ids, grad,
                                          table, kRows, accum);
}

}  // namespace

TEST_CASE("CUDA keyed lookup backward reports bad offsets and a bad order with the CPU's message",
          "[gpu][embedding][errors]") {
  test::ParityContexts pc;
  // Bags {7, 3}, {3}, {9, 7}: keys 3, 7, 9 at positions {1, 2}, {0, 4}, {3}.
  const std::vector<int> good_order = {1, 2, 0, 4, 3};
  const std::vector<int64_t> starts = {0, 2, 4, 5}, good_offsets = {0, 2, 3, 5};
  struct Case {
    const char* what;
    std::vector<int64_t> offsets;
    std::vector<int> order;
  };
  const std::vector<Case> cases = {
      {"decreasing offsets", {0, 3, 2, 5}, good_order},
      {"offsets[batch] != nnz", {0, 2, 3, 4}, good_order},
      {"an order entry past the positions", good_offsets, {1, 2, 0, 5, 3}},
      {"a negative order entry", good_offsets, {1, -2, 0, 4, 3}},
  };
  const int64_t dim = 4, side_width = 3, ld = side_width + dim, keys = 3, nnz = 5, guard = 2;
  const auto dout = test::random_vector<float>(3 * dim, 43);
  const auto side = test::random_vector<float>(3 * side_width, 44);
  for (const auto& c : cases) {
    INFO(c.what);
    std::vector<float> rows_cpu(keys * ld);
    const std::string expected = test::error_of([&] {
      kernels::keyed_lookup_backward<float>(
          pc.cpu, Pooling::Sum, 3, dim, c.offsets.data(), nnz, false, c.order.data(), starts.data(),
          &keys, dout.data(), dim, side_width, side.data(), rows_cpu.data(), ld);
    });
    const auto d_offsets = test::to_gpu(pc.gpu, c.offsets);
    const auto d_order = test::to_gpu(pc.gpu, c.order);
    const auto d_starts = test::to_gpu(pc.gpu, starts);
    const auto d_keys = test::to_gpu(pc.gpu, std::vector<int64_t>{keys});
    const auto d_dout = test::to_gpu(pc.gpu, dout);
    const auto d_side = test::to_gpu(pc.gpu, side);
    auto d_rows = with_guard(pc.gpu, std::vector<float>(keys * ld, 0.0f), guard * ld);
    kernels::keyed_lookup_backward<float>(
        pc.gpu, Pooling::Sum, 3, dim, d_offsets.data(), nnz, false, d_order.data(), d_starts.data(),
        d_keys.data(), d_dout.data(), dim, side_width, d_side.data(), d_rows.data(), ld);
    REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
    pc.gpu.check_device_errors();  // reset
    const auto rows = to_host(pc.gpu, d_rows);
    test::require_bitwise_equal(std::vector<float>(rows.begin() + keys * ld, rows.end()),
                                std::vector<float>(guard * ld, kGuard), "rows guard");
  }
  // The next valid call: bitwise equal to the CPU.
  std::vector<float> rows_cpu(keys * ld);
  kernels::keyed_lookup_backward<float>(pc.cpu, Pooling::Mean, 3, dim, good_offsets.data(), nnz,
                                        false, good_order.data(), starts.data(), &keys, dout.data(),
                                        dim, side_width, side.data(), rows_cpu.data(), ld);
  const auto d_offsets = test::to_gpu(pc.gpu, good_offsets);
  const auto d_order = test::to_gpu(pc.gpu, good_order);
  const auto d_starts = test::to_gpu(pc.gpu, starts);
  const auto d_keys = test::to_gpu(pc.gpu, std::vector<int64_t>{keys});
  const auto d_dout = test::to_gpu(pc.gpu, dout);
  const auto d_side = test::to_gpu(pc.gpu, side);
  Tensor<float> d_rows(pc.gpu, {keys * ld});
  kernels::keyed_lookup_backward<float>(
      pc.gpu, Pooling::Mean, 3, dim, d_offsets.data(), nnz, false, d_order.data(), d_starts.data(),
      d_keys.data(), d_dout.data(), dim, side_width, d_side.data(), d_rows.data(), ld);
  test::require_bitwise_equal(to_host(pc.gpu, d_rows), rows_cpu, "valid call after the error");
  CHECK(rows_cpu[0] == side[0] + side[side_width]);  // key 3: positions 1 (bag 0) and 2 (bag 1)
}

TEST_CASE("CUDA sparse optimizers report num_unique > max_unique and change nothing",
          "[gpu][optimizer][errors]") {
  test::ParityContexts pc;
  for (const int64_t dim : {int64_t{1}, int64_t{16}, int64_t{33}}) {
    for (const bool adam : {false, true}) {
      for (const int64_t count : {kMaxUnique + 1, int64_t{1} << 40, int64_t{-1}}) {
        INFO("dim " << dim << (adam ? " adam" : " adagrad") << " num_unique " << count);
        const std::vector<uint64_t> ids = {0, 2, 4, 6, 8, 9};
        const auto grad = test::random_vector<float>(kMaxUnique * dim, 55);
        const Tables init = initial_tables(dim);
        Tables cpu = init;
        const std::string expected = test::error_of([&] {
          update(pc.cpu, dim, &count, ids.data(), grad.data(), cpu.table.data(), cpu.accum.data(),
                 cpu.m.data(), cpu.v.data(), adam);
        });
        require_all_unchanged(init, cpu, "CPU");

        DeviceTables d(pc.gpu, init);
        const auto d_ids = test::to_gpu(pc.gpu, ids);
        const auto d_grad = test::to_gpu(pc.gpu, grad);
        const auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{count});
        update(pc.gpu, dim, d_count.data(), d_ids.data(), d_grad.data(), d.table.data(),
               d.accum.data(), d.m.data(), d.v.data(), adam);
        REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
        require_all_unchanged(init, d.to_host(pc.gpu), "GPU");  // every row, and the guards
      }
    }
  }
}

TEST_CASE("CUDA sparse optimizers report unique ids past the table and never write past it",
          "[gpu][optimizer][errors]") {
  test::ParityContexts pc;
  // ids[2] = kRows is the first bad one; kRows + 2 is a guard row; 2^40 is far past any buffer.
  const std::vector<uint64_t> ids = {1, 3, kRows, kRows + 2, uint64_t{1} << 40, 5};
  const int64_t count = 6;
  const std::vector<int64_t> never_written = {0, 2, 4, 6, 7, 8, 9, kRows, kRows + 1, kRows + 2};
  for (const int64_t dim : {int64_t{1}, int64_t{16}, int64_t{33}}) {
    for (const bool adam : {false, true}) {
      INFO("dim " << dim << (adam ? " adam" : " adagrad"));
      const auto grad = test::random_vector<float>(kMaxUnique * dim, 56);
      const Tables init = initial_tables(dim);
      Tables cpu = init;
      const std::string expected = test::error_of([&] {
        update(pc.cpu, dim, &count, ids.data(), grad.data(), cpu.table.data(), cpu.accum.data(),
               cpu.m.data(), cpu.v.data(), adam);
      });
      require_all_unchanged(init, cpu, "CPU");  // the CPU checks every id before writing

      DeviceTables d(pc.gpu, init);
      const auto d_ids = test::to_gpu(pc.gpu, ids);
      const auto d_grad = test::to_gpu(pc.gpu, grad);
      const auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{count});
      update(pc.gpu, dim, d_count.data(), d_ids.data(), d_grad.data(), d.table.data(),
             d.accum.data(), d.m.data(), d.v.data(), adam);
      REQUIRE_THROWS_WITH(d.to_host(pc.gpu), expected);  // its first to_host() reports it
      // CUDA updates the valid listed rows (1, 3, 5) of a failing call; no other row of the
      // table or its state, and no guard row, is written.
      const Tables gpu = d.to_host(pc.gpu);
      require_rows_unchanged(init.table, gpu.table, dim, never_written, "table");
      require_rows_unchanged(init.accum, gpu.accum, 1, never_written, "accum");
      require_rows_unchanged(init.m, gpu.m, dim, never_written, "m");
      require_rows_unchanged(init.v, gpu.v, dim, never_written, "v");
    }
  }
}

TEST_CASE("A CUDA sparse update after an unreported error changes nothing and the first error wins",
          "[gpu][optimizer][errors]") {
  // A forward that found a bad id, then the update of the same step: the CPU would have thrown
  // at the forward, so the update must not run, and the forward's error is the one reported.
  test::ParityContexts pc;
  const int64_t dim = 16;
  const std::vector<int64_t> offsets = {0, 2};
  const std::vector<uint64_t> bad_ids = {3, kRows + 1};
  const auto table_values = test::random_vector<float>(kRows * dim, 57);
  float out[dim];
  const std::string expected = test::error_of([&] {
    kernels::pooled_lookup_forward<float>(pc.cpu, Pooling::Sum, 1, dim, table_values.data(), kRows,
                                          offsets.data(), bad_ids.data(), out, dim);
  });

  const std::vector<uint64_t> ids = {1, 3, 5};
  const int64_t count = 3;
  const auto grad = test::random_vector<float>(kMaxUnique * dim, 58);
  const Tables init = initial_tables(dim);
  DeviceTables d(pc.gpu, init);
  const auto d_offsets = test::to_gpu(pc.gpu, offsets);
  const auto d_bad_ids = test::to_gpu(pc.gpu, bad_ids);
  Tensor<float> d_out(pc.gpu, {dim});
  const auto d_ids = test::to_gpu(pc.gpu, ids);
  const auto d_grad = test::to_gpu(pc.gpu, grad);
  const auto d_count = test::to_gpu(pc.gpu, std::vector<int64_t>{count});
  const auto d_too_many = test::to_gpu(pc.gpu, std::vector<int64_t>{kMaxUnique + 5});

  kernels::pooled_lookup_forward<float>(pc.gpu, Pooling::Sum, 1, dim, d.table.data(), kRows,
                                        d_offsets.data(), d_bad_ids.data(), d_out.data(), dim);
  // A later launch with an error of its own, which must not replace the first.
  update(pc.gpu, dim, d_too_many.data(), d_ids.data(), d_grad.data(), d.table.data(),
         d.accum.data(), d.m.data(), d.v.data(), false);
  for (const bool adam : {false, true})
    update(pc.gpu, dim, d_count.data(), d_ids.data(), d_grad.data(), d.table.data(), d.accum.data(),
           d.m.data(), d.v.data(), adam);
  REQUIRE_THROWS_WITH(pc.gpu.check_device_errors(), expected);
  require_all_unchanged(init, d.to_host(pc.gpu), "after the error");

  // Reported and reset: the same updates now apply, as on the CPU.
  Tables cpu = init;
  for (const bool adam : {false, true}) {
    update(pc.cpu, dim, &count, ids.data(), grad.data(), cpu.table.data(), cpu.accum.data(),
           cpu.m.data(), cpu.v.data(), adam);
    update(pc.gpu, dim, d_count.data(), d_ids.data(), d_grad.data(), d.table.data(), d.accum.data(),
           d.m.data(), d.v.data(), adam);
  }
  const Tables gpu = d.to_host(pc.gpu);
  test::require_close(gpu.table, cpu.table, 1e-6, 1e-5, "table");
  test::require_close(gpu.accum, cpu.accum, 1e-6, 1e-5, "accum");
  test::require_close(gpu.m, cpu.m, 1e-6, 1e-5, "m");
  test::require_close(gpu.v, cpu.v, 1e-6, 1e-5, "v");
  CHECK(gpu.table != init.table);
}

TEST_CASE("CUDA key index insert reports a key that finds no free bucket and places the others",
          "[gpu][key_index][errors]") {
  test::ParityContexts pc;
  const int64_t buckets = 4, mask = buckets - 1;
  const std::vector<uint64_t> keys = {7, 8, 9, 10, 11};
  const std::vector<int64_t> slots = {0, 1, 2, 3, 4};
  auto d_bucket_keys = test::to_gpu(pc.gpu, std::vector<uint64_t>(buckets, 0));
  auto d_bucket_slots = test::to_gpu(pc.gpu, std::vector<int64_t>(buckets, kernels::kEmptyBucket));
  const auto d_keys = test::to_gpu(pc.gpu, keys);
  const auto d_slots = test::to_gpu(pc.gpu, slots);
  kernels::key_index_insert(pc.gpu, d_bucket_keys.data(), d_bucket_slots.data(), mask, 5,
                            d_keys.data(), d_slots.data());
  // The racing inserts decide which key is left out; the message is the CPU's for that key.
  const std::string message = test::error_of([&] { pc.gpu.check_device_errors(); });
  bool known = false;
  for (int64_t i = 0; i < 5; ++i)
    known = known || message == kernels::index_full_message("key_index_insert", i, keys[i]);
  INFO(message);
  CHECK(known);
  CHECK_NOTHROW(pc.gpu.check_device_errors());  // reported once
  Tensor<int64_t> d_found(pc.gpu, {5});
  kernels::key_index_find(pc.gpu, d_bucket_keys.data(), d_bucket_slots.data(), mask, 5,
                          d_keys.data(), d_found.data());
  const auto found = to_host(pc.gpu, d_found);
  int64_t absent = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (found[i] == kernels::kEmptyBucket)
      ++absent;
    else
      CHECK(found[i] == slots[i]);
  }
  CHECK(absent == 1);
}

TEST_CASE("A device error is read with to_host's data in one host read, and reported once",
          "[gpu][errors]") {
  test::ParityContexts pc;
  const std::vector<int64_t> offsets = {0, 1};
  const std::vector<uint64_t> ids = {5};
  const std::vector<float> table(5 * 4, 1.0f);
  std::vector<float> out(4);
  const std::string expected = test::error_of([&] {
    kernels::pooled_lookup_forward<float>(pc.cpu, Pooling::Sum, 1, 4, table.data(), 5,
                                          offsets.data(), ids.data(), out.data(), 4);
  });
  const auto d_offsets = test::to_gpu(pc.gpu, offsets);
  const auto d_ids = test::to_gpu(pc.gpu, ids);
  const auto d_table = test::to_gpu(pc.gpu, table);
  Tensor<float> d_out(pc.gpu, {4});
  kernels::pooled_lookup_forward<float>(pc.gpu, Pooling::Sum, 1, 4, d_table.data(), 5,
                                        d_offsets.data(), d_ids.data(), d_out.data(), 4);
  const uint64_t reads = pc.gpu.host_reads();
  REQUIRE_THROWS_WITH(to_host(pc.gpu, d_out), expected);
  CHECK(pc.gpu.host_reads() == reads + 1);
  CHECK_NOTHROW(to_host(pc.gpu, d_out));
  CHECK_NOTHROW(pc.gpu.check_device_errors());
  CHECK(pc.gpu.host_reads() == reads + 2);  // check_device_errors() is not a counted read
}

TEST_CASE("flag_device_error marks a control-block status only while an error is pending",
          "[gpu][control][errors]") {
  test::ParityContexts pc;
  auto d_status = test::to_gpu(pc.gpu, std::vector<float>{0.0f});
  kernels::flag_device_error<float>(pc.gpu, 5.0f, d_status.data());
  CHECK(to_host(pc.gpu, d_status)[0] == 0.0f);

  const std::vector<int64_t> offsets = {1, 0};  // decreasing
  const std::vector<uint64_t> ids = {0};
  const auto d_offsets = test::to_gpu(pc.gpu, offsets);
  const auto d_ids = test::to_gpu(pc.gpu, ids);
  const auto d_table = test::to_gpu(pc.gpu, std::vector<float>(4, 1.0f));
  Tensor<float> d_out(pc.gpu, {4});
  kernels::pooled_lookup_forward<float>(pc.gpu, Pooling::Sum, 1, 4, d_table.data(), 1,
                                        d_offsets.data(), d_ids.data(), d_out.data(), 4);
  kernels::flag_device_error<float>(pc.gpu, 5.0f, d_status.data());
  REQUIRE_THROWS_WITH(to_host(pc.gpu, d_status),
                      Catch::Contains("offsets[1] = 0 < offsets[0] = 1"));
  CHECK(to_host(pc.gpu, d_status)[0] == 5.0f);  // written before the report
  d_status = test::to_gpu(pc.gpu, std::vector<float>{0.0f});
  kernels::flag_device_error<float>(pc.gpu, 5.0f, d_status.data());
  CHECK(to_host(pc.gpu, d_status)[0] == 0.0f);  // reset: nothing pending
}

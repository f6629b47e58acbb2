// A dynamic table on CUDA against its CPU reference (issue 13): the row kernels of
// kernels/feasign.h bitwise, and models with dynamic tables trained for several steps: the same
// keys in the same slots with the same statistics (bitwise), close rows and parameters.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "gpu_util.h"
#include "kernels/feasign.h"
#include "kernels/init.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "train/fault_injection.h"
#include "train/step.h"

using namespace lockstep;

TEST_CASE("Feasign row kernels: CUDA = CPU bitwise", "[gpu][dynamic]") {
  test::ParityContexts pc;
  std::mt19937_64 rng(3);
  const int64_t rows = 500, dim = 9, n = 300;
  std::vector<float> table(rows * dim), lr(rows);
  for (auto& v : table) v = static_cast<float>(rng() % 1000) / 100.0f - 5.0f;
  for (auto& v : lr) v = static_cast<float>(rng() % 1000) / 1000.0f - 0.5f;
  std::vector<int64_t> index(n), distinct(n);
  std::vector<uint64_t> keys(n);
  for (int64_t i = 0; i < n; ++i) {
    index[i] = static_cast<int64_t>(rng() % (rows + 50)) - 50;  // some -1 .. -50: zeros
    distinct[i] = i;
    keys[i] = rng();
  }
  std::shuffle(distinct.begin(), distinct.end(), rng);
  // A CSR of 40 samples × 3 positions over the lr rows.
  const int64_t batch = 40, per = 3;
  std::vector<int64_t> offsets = {0};
  std::vector<uint64_t> ids;
  for (int64_t b = 0; b < batch * per; ++b) {
    for (uint64_t k = rng() % 4; k > 0; --k) ids.push_back(rng() % rows);
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
  std::vector<float> dwide(batch), labels(batch);
  for (auto& v : dwide) v = static_cast<float>(rng() % 100) / 7.0f;
  for (auto& v : labels) v = static_cast<float>(rng() % 8) / 7.0f;

  std::vector<float> out[2][4];
  for (int side = 0; side < 2; ++side) {
    const Context& ctx = side == 0 ? pc.cpu : pc.gpu;
    auto t = make_tensor(ctx, table);
    auto l = make_tensor(ctx, lr);
    auto ix = make_tensor(ctx, index);
    auto dx = make_tensor(ctx, distinct);
    auto k = make_tensor(ctx, keys);
    auto off = make_tensor(ctx, offsets);
    auto id = make_tensor(ctx, ids);
    auto dw = make_tensor(ctx, dwide);
    auto lab = make_tensor(ctx, labels);
    Tensor<float> g(ctx, {n, dim + 2}), wide(ctx, {batch}), stats(ctx, {batch * per, 3});
    kernels::fill_constant<float>(ctx, n * (dim + 2), -3.0f,
                                  g.data());  // the 2 columns gather skips
    kernels::gather_rows<float>(ctx, n, dim, t.data(), dim, rows, ix.data(), g.data(), dim + 2);
    out[side][0] = to_host(ctx, g.data(), n * (dim + 2));
    kernels::fill_rows<float>(ctx, n / 2, dim, dx.data(), 0.25f, t.data(), dim, rows);
    kernels::feasign_init_rows<float>(ctx, n / 3, dim, k.data(), dx.data() + n / 2, 11, 12, 0.5f,
                                      t.data(), rows);
    out[side][1] = to_host(ctx, t);
    kernels::fill_constant<float>(ctx, batch, 0.5f, wide.data());
    kernels::wide_lookup_forward<float>(ctx, batch, per, off.data(), id.data(), l.data(), rows,
                                        wide.data());
    out[side][2] = to_host(ctx, wide);
    kernels::feasign_bag_stats<float>(ctx, batch, per, lab.data(), dw.data(), stats.data());
    out[side][3] = to_host(ctx, stats);
  }
  test::require_bitwise_equal(out[1][0], out[0][0], "gather_rows");
  test::require_bitwise_equal(out[1][1], out[0][1], "fill_rows + feasign_init_rows");
  test::require_bitwise_equal(out[1][2], out[0][2], "wide_lookup_forward");
  test::require_bitwise_equal(out[1][3], out[0][3], "feasign_bag_stats");
}

TEST_CASE("wide_lookup_forward: CUDA = CPU bitwise for sequence fields (one warp per sample)",
          "[gpu][dynamic]") {
  test::ParityContexts pc;
  std::mt19937_64 rng(5);
  const int64_t rows = 300, batch = 37, per = 20;  // up to 60 ids a sample: past one warp's 32
  std::vector<float> lr(rows);
  for (auto& v : lr) v = static_cast<float>(rng() % 1000) / 997.0f - 0.5f;
  std::vector<int64_t> offsets = {0};
  std::vector<uint64_t> ids;
  for (int64_t b = 0; b < batch * per; ++b) {
    for (uint64_t k = rng() % 4; k > 0; --k) ids.push_back(rng() % rows);
    offsets.push_back(static_cast<int64_t>(ids.size()));
  }
  std::vector<float> out[2];
  for (int side = 0; side < 2; ++side) {
    const Context& ctx = side == 0 ? pc.cpu : pc.gpu;
    auto l = make_tensor(ctx, lr);
    auto off = make_tensor(ctx, offsets);
    auto id = make_tensor(ctx, ids);
    Tensor<float> wide(ctx, {batch});
    kernels::fill_constant<float>(ctx, batch, 0.25f, wide.data());
    kernels::wide_lookup_forward<float>(ctx, batch, per, off.data(), id.data(), l.data(), rows,
                                        wide.data());
    out[side] = to_host(ctx, wide);
  }
  test::require_bitwise_equal(out[1], out[0], "wide_lookup_forward, 20 positions a sample");
}

TEST_CASE("unique_keys: CUDA = CPU (duplicates, extreme keys, a hot key, room past nnz)",
          "[gpu][dynamic]") {
  test::ParityContexts pc;
  std::mt19937_64 rng(11);
  const int64_t nnz = 5000;
  std::vector<uint64_t> ids(nnz);
  for (int64_t j = 0; j < nnz; ++j) {
    const uint64_t r = rng() % 700;  // duplicates; one hot key
    ids[j] = r < 100 ? 42 : r == 699 ? ~uint64_t{0} : r * 0x9e3779b97f4a7c15ULL;
  }
  std::vector<uint64_t> out_ids[2], out_keys[2];
  std::vector<int> out_order[2];
  std::vector<int64_t> out_starts[2];
  int64_t n[2];
  for (int side = 0; side < 2; ++side) {
    const Context& ctx = side == 0 ? pc.cpu : pc.gpu;
    auto id = make_tensor(ctx, ids);
    const int64_t room = nnz + 100;  // a padded batch's: zeros past the distinct keys
    Tensor<uint64_t> keys(ctx, {room});
    Tensor<int> order(ctx, {room});
    Tensor<int64_t> count(ctx, {1});
    auto starts = make_tensor(ctx, std::vector<int64_t>(room + 1, -1));
    kernels::unique_keys<float>(ctx, nnz, room, id.data(), keys.data(), count.data(), order.data(),
                                starts.data());
    out_ids[side] = to_host(ctx, id);
    out_keys[side] = to_host(ctx, keys);
    out_order[side] = to_host(ctx, order);
    out_order[side].resize(nnz);  // past nnz: untouched
    out_starts[side] = to_host(ctx, starts);
    n[side] = to_host(ctx, count)[0];
  }
  CHECK(n[1] == n[0]);
  CHECK(out_ids[1] == out_ids[0]);
  CHECK(out_keys[1] == out_keys[0]);
  CHECK(out_order[1] == out_order[0]);
  CHECK(out_starts[1] == out_starts[0]);
}

namespace {
/// Trains `make`'s model on both contexts for `steps` steps; the key maps and statistics are
/// bitwise equal, every value close.
template <class Make>
void require_dynamic_training_parity(test::ParityContexts& pc, Make make, int steps) {
  auto cpu = make(pc.cpu);
  auto gpu = make(pc.gpu);
  train::LocalTrainer<float> t_cpu(*cpu, pc.cpu), t_gpu(*gpu, pc.gpu);
  for (int s = 0; s < steps; ++s) {
    const data::Batch b = test::fixture_batch(100 * s, 200, 20);
    const double l_cpu = t_cpu.step(b), l_gpu = t_gpu.step(b);
    CHECK(l_gpu == Approx(l_cpu).epsilon(1e-4));
  }
  const auto tc = cpu->tables(), tg = gpu->tables();
  REQUIRE(tc.size() == tg.size());
  // A boundary, a save's mark, a round trip through the checkpoint tensors (the store rebuilt
  // from its slots) and two more steps: the decisions stay the CPU's.
  for (size_t t = 0; t < tc.size(); ++t) {
    auto *dc = tc[t]->dynamic_table(), *dg = tg[t]->dynamic_table();
    CHECK(dg->shrink(pc.gpu) == dc->shrink(pc.cpu));
    dc->mark_saved(pc.cpu, true);
    dg->mark_saved(pc.gpu, true);
    tg[t]->from_host(pc.gpu, tg[t]->to_host(pc.gpu));
  }
  for (int s = steps; s < steps + 2; ++s) {
    const data::Batch b = test::fixture_batch(100 * s, 200, 20);
    CHECK(t_gpu.step(b) == Approx(t_cpu.step(b)).epsilon(1e-4));
  }
  for (size_t t = 0; t < tc.size(); ++t) {
    INFO("table " << tc[t]->config().name);
    REQUIRE(tc[t]->dynamic());
    const auto hc = tc[t]->to_host(pc.cpu), hg = tg[t]->to_host(pc.gpu);
    const auto& name = tc[t]->config().name;
    REQUIRE(tc[t]->dynamic_table()->size() > 0);
    test::require_bitwise_equal(hg.at(name + ".keys"), hc.at(name + ".keys"), "slot -> key map");
    test::require_bitwise_equal(hg.at(name + ".feasign"), hc.at(name + ".feasign"),
                                "feasign statistics");
    test::require_close(hg.at(name + ".lr"), hc.at(name + ".lr"), 5e-3, 1e-3, "lr weights");
    test::require_close(hg.at(name + ".weight"), hc.at(name + ".weight"), 5e-3, 1e-3, "embedx");
  }
  test::require_close(test::all_parameters(pc.gpu, *gpu), test::all_parameters(pc.cpu, *cpu), 5e-3,
                      1e-3, "all parameters");
}

embedding::AccessorConfig quick_admission() {
  embedding::AccessorConfig a;
  a.embedx_threshold = 2;  // admitted after a few shows: embedx learns within the test
  return a;
}
}  // namespace

TEST_CASE("Dynamic tables on CUDA train like the CPU reference (embedding_mlp, DIN)",
          "[gpu][dynamic]") {
  test::ParityContexts pc;
  const auto a = quick_admission();
  SECTION("embedding_mlp, room for every key") {
    require_dynamic_training_parity(
        pc, [&](const Context& c) { return test::fixture_dynamic_model(c, a); }, 5);
  }
  SECTION("embedding_mlp, full tables: evictions") {
    require_dynamic_training_parity(
        pc, [&](const Context& c) { return test::fixture_dynamic_model(c, a, 40, 60); }, 5);
  }
  SECTION("DIN: a sequence field on a dynamic table") {
    require_dynamic_training_parity(
        pc, [&](const Context& c) { return test::fixture_din(c, &a); }, 5);
  }
}

TEST_CASE("Dynamic tables under the lockstep step, batches staged ahead: CUDA = CPU",
          "[gpu][dynamic]") {
  // The distinct keys of a staged-ahead batch are made on the staging context's stream while
  // the step runs; evicting tables (capacities 40 and 60) make every step's decisions matter.
  test::ParityContexts pc;
  const auto a = quick_admission();
  auto cpu = test::fixture_dynamic_model(pc.cpu, a, 40, 60);
  auto gpu = test::fixture_dynamic_model(pc.gpu, a, 40, 60);
  auto comm_c = comm::create_communicator("local", pc.cpu.device());
  auto comm_g = comm::create_communicator("local", pc.gpu.device());
  train::LockstepStep on_cpu(*cpu, *comm_c, pc.cpu), on_gpu(*gpu, *comm_g, pc.gpu);
  std::vector<data::Batch> batches;
  for (int s = 0; s < 8; ++s) batches.push_back(test::fixture_batch(100 * s, 200, 20));
  const train::FaultInjection no_fault;
  for (size_t i = 0; i < batches.size(); ++i) {
    train::StepInput input;
    input.step = i;
    input.has_next = i + 1 < batches.size();
    const data::Batch* next = input.has_next ? &batches[i + 1] : nullptr;
    const double l_cpu = on_cpu.run(batches[i], input, no_fault, next).loss_sum;
    const double l_gpu = on_gpu.run(batches[i], input, no_fault, next).loss_sum;
    CHECK(l_gpu == Approx(l_cpu).epsilon(1e-4));
  }
  CHECK(on_gpu.steps_staged_ahead() == static_cast<int64_t>(batches.size()) - 1);
  const auto tc = cpu->tables(), tg = gpu->tables();
  for (size_t t = 0; t < tc.size(); ++t) {
    const auto hc = tc[t]->to_host(pc.cpu), hg = tg[t]->to_host(pc.gpu);
    const auto& name = tc[t]->config().name;
    test::require_bitwise_equal(hg.at(name + ".keys"), hc.at(name + ".keys"), "slot -> key map");
    test::require_bitwise_equal(hg.at(name + ".feasign"), hc.at(name + ".feasign"),
                                "feasign statistics");
    test::require_close(hg.at(name + ".weight"), hc.at(name + ".weight"), 5e-3, 1e-3, "embedx");
  }
}

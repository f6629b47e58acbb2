// CUDA vs CPU optimizers: equal to fp32 rounding (FMA contraction, sqrt and division differ),
// bitwise reproducible run-to-run on the GPU, and sparse updates leave untouched rows alone.

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/optimizer.h"

using namespace lockstep;
using kernels::AdagradHyper;
using kernels::AdamHyper;
using kernels::SgdHyper;

namespace {

constexpr double kAtol = 1e-6, kRtol = 1e-5;
constexpr int kSteps = 3;

// The buffers one optimizer updates: parameters and up to two state buffers, on the host.
struct State {
  std::vector<float> param, s1, s2;
};

// Device copies of a State, updated in place, and copied back.
struct DeviceState {
  Tensor<float> param, s1, s2;
  DeviceState(const Context& gpu, const State& s)
      : param(test::to_gpu(gpu, s.param)),
        s1(test::to_gpu(gpu, s.s1)),
        s2(test::to_gpu(gpu, s.s2)) {}
  State to_host(const Context& gpu) const {
    return {lockstep::to_host(gpu, param), lockstep::to_host(gpu, s1), lockstep::to_host(gpu, s2)};
  }
};

void require_state_close(const State& gpu, const State& cpu, const std::string& what) {
  test::require_close(gpu.param, cpu.param, kAtol, kRtol, what + ": param");
  test::require_close(gpu.s1, cpu.s1, kAtol, kRtol, what + ": state 1");
  test::require_close(gpu.s2, cpu.s2, kAtol, kRtol, what + ": state 2");
}

void require_state_bitwise(const State& a, const State& b, const std::string& what) {
  test::require_bitwise_equal(a.param, b.param, what + ": param");
  test::require_bitwise_equal(a.s1, b.s1, what + ": state 1");
  test::require_bitwise_equal(a.s2, b.s2, what + ": state 2");
}

// One step of an optimizer on `ctx`: (ctx, step, grad, param, state1, state2).
using StepFn = std::function<void(const Context&, int64_t, const float*, float*, float*, float*)>;

// Runs kSteps steps from `init` on the CPU and twice on the GPU; requires GPU ~ CPU and the
// two GPU runs bitwise equal. grads[k] is the gradient of step k + 1. `updates`: whether the
// steps must change the parameters (false for an empty sparse update).
void require_optimizer_parity(test::ParityContexts& pc, const State& init,
                              const std::vector<std::vector<float>>& grads, const StepFn& step,
                              const std::string& what, bool updates = true) {
  State cpu = init;
  for (int k = 0; k < kSteps; ++k)
    step(pc.cpu, k + 1, grads[k].data(), cpu.param.data(), cpu.s1.data(), cpu.s2.data());
  CHECK((cpu.param != init.param) == updates);

  std::vector<Tensor<float>> d_grads;
  for (const auto& g : grads) d_grads.push_back(test::to_gpu(pc.gpu, g));
  State runs[2];
  for (State& run : runs) {
    DeviceState d(pc.gpu, init);
    for (int k = 0; k < kSteps; ++k)
      step(pc.gpu, k + 1, d_grads[k].data(), d.param.data(), d.s1.data(), d.s2.data());
    run = d.to_host(pc.gpu);
  }
  require_state_close(runs[0], cpu, what);
  require_state_bitwise(runs[0], runs[1], what + " (run-to-run)");
}

std::vector<std::vector<float>> random_grads(size_t n, uint64_t seed) {
  std::vector<std::vector<float>> grads;
  for (int k = 0; k < kSteps; ++k) grads.push_back(test::random_vector<float>(n, seed + k));
  return grads;
}

}  // namespace

TEST_CASE("CUDA dense optimizers match the CPU and are deterministic", "[gpu][optimizer]") {
  test::ParityContexts pc;
  const float grad_scale = 0.5f;
  for (const int64_t n : {int64_t{1}, int64_t{1000}, int64_t{(1 << 20) + 3}}) {
    INFO("n " << n);
    const size_t size = static_cast<size_t>(n);
    const auto grads = random_grads(size, 10 + n);
    const auto param = test::random_vector<float>(size, 1);

    for (const bool nesterov : {false, true}) {
      SgdHyper h;
      h.lr = 0.1f;
      h.momentum = 0.9f;
      h.weight_decay = 0.01f;
      h.nesterov = nesterov;
      require_optimizer_parity(
          pc, {param, std::vector<float>(size, 0.0f), {0.0f}}, grads,
          [&](const Context& ctx, int64_t, const float* g, float* p, float* v, float*) {
            kernels::sgd_update<float>(ctx, h, grad_scale, n, p, g, v);
          },
          nesterov ? "sgd nesterov" : "sgd momentum");
    }
    SgdHyper plain;
    plain.lr = 0.1f;
    require_optimizer_parity(
        pc, {param, {0.0f}, {0.0f}}, grads,
        [&](const Context& ctx, int64_t, const float* g, float* p, float*, float*) {
          kernels::sgd_update<float>(ctx, plain, grad_scale, n, p, g, nullptr);
        },
        "sgd without momentum");

    AdamHyper adam;
    adam.lr = 0.01f;
    adam.weight_decay = 0.01f;
    require_optimizer_parity(
        pc, {param, std::vector<float>(size, 0.0f), std::vector<float>(size, 0.0f)}, grads,
        [&](const Context& ctx, int64_t step, const float* g, float* p, float* m, float* v) {
          kernels::adam_update<float>(ctx, adam, step, grad_scale, n, p, g, m, v);
        },
        "adam");

    AdagradHyper adagrad;
    adagrad.lr = 0.05f;
    require_optimizer_parity(
        pc, {param, test::random_vector<float>(size, 2, 0.0, 0.5), {0.0f}}, grads,
        [&](const Context& ctx, int64_t, const float* g, float* p, float* acc, float*) {
          kernels::adagrad_update<float>(ctx, adagrad, grad_scale, n, p, g, acc);
        },
        "adagrad");
  }
}

namespace {

// `count` distinct rows of [0, rows) in ascending order, like pooled_lookup_backward's output.
std::vector<uint64_t> random_unique_rows(int64_t rows, int64_t count, uint64_t seed) {
  std::vector<uint64_t> all(static_cast<size_t>(rows));
  std::iota(all.begin(), all.end(), uint64_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(count));
  std::sort(all.begin(), all.end());
  return all;
}

// Rows of `after` not in `touched` are bitwise equal to `before`.
void require_untouched(const std::vector<float>& before, const std::vector<float>& after,
                       int64_t width, const std::vector<uint64_t>& touched,
                       const std::string& what) {
  std::vector<bool> is_touched(before.size() / width, false);
  for (const uint64_t r : touched) is_touched[r] = true;
  std::vector<float> a, b;
  for (size_t r = 0; r < is_touched.size(); ++r) {
    if (is_touched[r]) continue;
    a.insert(a.end(), before.begin() + r * width, before.begin() + (r + 1) * width);
    b.insert(b.end(), after.begin() + r * width, after.begin() + (r + 1) * width);
  }
  test::require_bitwise_equal(b, a, what + ": untouched rows");
}

}  // namespace

TEST_CASE("CUDA sparse optimizers match the CPU and touch only the listed rows",
          "[gpu][optimizer]") {
  test::ParityContexts pc;
  const int64_t rows = 1000, max_unique = 150;
  const float grad_scale = 0.25f;
  for (const int64_t dim : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{33}, int64_t{128}}) {
    for (const int64_t count : {int64_t{0}, int64_t{1}, int64_t{100}}) {
      INFO("dim " << dim << " num_unique " << count);
      // Rows past num_unique hold garbage (large gradients, ids pointing at row 0) that must
      // never be applied.
      auto ids = random_unique_rows(rows, count, 40 + dim + count);
      const std::vector<uint64_t> touched = ids;
      ids.resize(max_unique, 0);
      std::vector<std::vector<float>> grads = random_grads(max_unique * dim, 50 + dim);
      for (auto& g : grads) std::fill(g.begin() + count * dim, g.end(), 1000.0f);
      const auto d_ids = test::to_gpu(pc.gpu, ids);
      const auto d_num_unique = test::to_gpu(pc.gpu, std::vector<int64_t>{count});

      const State adagrad_init{test::random_vector<float>(rows * dim, 60),
                               test::random_vector<float>(rows, 61, 0.0, 0.5),
                               {0.0f}};
      AdagradHyper adagrad;
      adagrad.lr = 0.1f;
      require_optimizer_parity(
          pc, adagrad_init, grads,
          [&](const Context& ctx, int64_t, const float* g, float* table, float* acc, float*) {
            const bool gpu = ctx.is_cuda();
            kernels::sparse_adagrad_update<float>(
                ctx, adagrad, grad_scale, dim, gpu ? d_num_unique.data() : &count, max_unique,
                gpu ? d_ids.data() : ids.data(), g, table, rows, acc);
          },
          "sparse adagrad", count > 0);

      const State adam_init{test::random_vector<float>(rows * dim, 70),
                            test::random_vector<float>(rows * dim, 71, -0.1, 0.1),
                            test::random_vector<float>(rows * dim, 72, 0.0, 0.1)};
      AdamHyper adam;
      adam.lr = 0.01f;
      adam.weight_decay = 0.01f;
      require_optimizer_parity(
          pc, adam_init, grads,
          [&](const Context& ctx, int64_t step, const float* g, float* table, float* m, float* v) {
            const bool gpu = ctx.is_cuda();
            kernels::sparse_adam_update<float>(
                ctx, adam, step, grad_scale, dim, gpu ? d_num_unique.data() : &count, max_unique,
                gpu ? d_ids.data() : ids.data(), g, table, rows, m, v);
          },
          "sparse adam", count > 0);

      // Untouched rows on the GPU: one more run, compared with the initial state.
      DeviceState d(pc.gpu, adam_init);
      const auto d_grad = test::to_gpu(pc.gpu, grads[0]);
      kernels::sparse_adam_update<float>(pc.gpu, adam, 1, grad_scale, dim, d_num_unique.data(),
                                         max_unique, d_ids.data(), d_grad.data(), d.param.data(),
                                         rows, d.s1.data(), d.s2.data());
      const State after = d.to_host(pc.gpu);
      require_untouched(adam_init.param, after.param, dim, touched, "sparse adam table");
      require_untouched(adam_init.s1, after.s1, dim, touched, "sparse adam m");
      require_untouched(adam_init.s2, after.s2, dim, touched, "sparse adam v");
      DeviceState da(pc.gpu, adagrad_init);
      kernels::sparse_adagrad_update<float>(pc.gpu, adagrad, grad_scale, dim, d_num_unique.data(),
                                            max_unique, d_ids.data(), d_grad.data(),
                                            da.param.data(), rows, da.s1.data());
      const State after_adagrad = da.to_host(pc.gpu);
      require_untouched(adagrad_init.param, after_adagrad.param, dim, touched,
                        "sparse adagrad table");
      require_untouched(adagrad_init.s1, after_adagrad.s1, 1, touched, "sparse adagrad accum");
    }
  }
}

TEST_CASE("CUDA sparse Adam over every row matches dense Adam", "[gpu][optimizer]") {
  test::ParityContexts pc;
  const int64_t rows = 300, dim = 33, n = rows * dim;
  std::vector<uint64_t> all_rows(rows);
  std::iota(all_rows.begin(), all_rows.end(), uint64_t{0});
  const auto d_ids = test::to_gpu(pc.gpu, all_rows);
  const auto d_num_unique = test::to_gpu(pc.gpu, std::vector<int64_t>{rows});
  const auto grads = random_grads(n, 80);
  const State init{test::random_vector<float>(n, 81), std::vector<float>(n, 0.0f),
                   std::vector<float>(n, 0.0f)};
  AdamHyper h;
  h.weight_decay = 0.02f;
  DeviceState dense(pc.gpu, init), sparse(pc.gpu, init);
  for (int k = 0; k < kSteps; ++k) {
    const auto d_grad = test::to_gpu(pc.gpu, grads[k]);
    kernels::adam_update<float>(pc.gpu, h, k + 1, 0.5f, n, dense.param.data(), d_grad.data(),
                                dense.s1.data(), dense.s2.data());
    kernels::sparse_adam_update<float>(pc.gpu, h, k + 1, 0.5f, dim, d_num_unique.data(), rows,
                                       d_ids.data(), d_grad.data(), sparse.param.data(), rows,
                                       sparse.s1.data(), sparse.s2.data());
  }
  // Same device function on the same inputs; allow only the last-bit freedom the compiler has
  // in contracting it differently inside the two kernels. That freedom is relative to the
  // terms, not to the result: m = β1·m + (1 − β1)·g cancels, so an absolute part too.
  const State a = dense.to_host(pc.gpu), b = sparse.to_host(pc.gpu);
  test::require_close(b.param, a.param, 1e-7, 1e-6, "param");
  test::require_close(b.s1, a.s1, 1e-7, 1e-6, "m");
  test::require_close(b.s2, a.s2, 1e-7, 1e-6, "v");
  CHECK(a.param != init.param);
}

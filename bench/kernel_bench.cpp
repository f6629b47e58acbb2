// Kernel benchmarks at din-bench sizes (../shared/DESIGN.md §6): pooled embedding lookup
// forward/backward (GB/s), the sparse Adagrad update, and the DIN MLP forward+backward
// (GFLOP/s), each next to the hardware ceiling.
//
//   lockstep-bench-kernels [--device auto|cpu|cuda] [--batch N] [--iters N] [--json FILE]

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "bench/bench_util.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/din_unit.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/init.h"
#include "kernels/optimizer.h"
#include "lockstep/core/device_info.h"
#include "lockstep/core/logging.h"
#include "lockstep/core/tensor.h"
#include "lockstep/nn/mlp.h"

using namespace lockstep;

namespace {

// Peak achievable bandwidth of the CPU, measured with a STREAM-like triad a = b + s*c over
// arrays much larger than the caches (the ceiling /proc cannot tell).
double cpu_triad_gbs(const Context& ctx) {
  const size_t n = size_t{1} << 24;  // 64 MiB per array
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const double ms = bench::median_ms(
      ctx,
      [&] {
        for (size_t i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
      },
      1, 5);
  return 3.0 * n * sizeof(float) / (ms * 1e-3) / 1e9;
}

double measured_sgemm_gflops(const Context& ctx) {
  const int64_t n = ctx.is_cuda() ? 8192 : 1024;
  Tensor<float> a(ctx, {n, n}), b(ctx, {n, n}), c(ctx, {n, n});
  zero_bytes(ctx, a.data(), a.bytes());
  zero_bytes(ctx, b.data(), b.bytes());
  const double ms = bench::median_ms(
      ctx,
      [&] {
        kernels::gemm<float>(ctx, kernels::Trans::N, kernels::Trans::N, n, n, n, 1.0f, a.data(), n,
                             b.data(), n, 0.0f, c.data(), n);
      },
      1, 5);
  return 2.0 * n * n * n / (ms * 1e-3) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep kernel benchmarks at din-bench sizes"};
  std::string device_flag = "auto", json_path;
  int64_t batch = 0;
  int iters = 20;
  app.add_option("--device", device_flag, "auto, cpu, cuda or cuda:N");
  app.add_option("--batch", batch, "samples per batch (default: 4096 on GPU, 1024 on CPU)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--iters", iters, "timed iterations per case")->check(CLI::Range(1, 100000));
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  bool smoke = false;
  app.add_flag("--smoke", smoke,
               "only check that every case runs (tests, the CUDA emulator): no ceiling "
               "measurements, one timed iteration");
  CLI11_PARSE(app, argc, argv);
  if (smoke) iters = 1;
  try {
    const Device device = select_device(device_flag);
    Context ctx(device);
    if (batch == 0) batch = device.is_cuda() ? 4096 : 1024;
    DeviceInfo info = query_device_info(device);
    const bool cpu = device.is_cpu();
    const double bw_ceiling = smoke ? 0.0 : cpu ? cpu_triad_gbs(ctx) : info.peak_bandwidth_gbs;
    const double sgemm = smoke ? 0.0 : measured_sgemm_gflops(ctx);
    std::printf(
        "device: %s (%s)\n%s\nbandwidth ceiling: %.1f GB/s (%s); FP32 peak %.0f GFLOP/s; "
        "measured large SGEMM %.0f GFLOP/s\n",
        device.str().c_str(), info.name.c_str(), info.how.c_str(), bw_ceiling,
        cpu ? "measured triad" : "theoretical", info.peak_fp32_gflops, sgemm);

    // ---- din-bench history field: bags of 1..50 item ids, 1M-row table, dim 16, mean pooling.
    const int64_t rows = 1000000, dim = 16;
    std::mt19937_64 rng(1);
    std::vector<int64_t> offsets{0};
    std::vector<uint64_t> ids;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = 1 + static_cast<int64_t>(rng() % 50);
      for (int64_t j = 0; j < len; ++j) ids.push_back(rng() % rows);
      offsets.push_back(static_cast<int64_t>(ids.size()));
    }
    const int64_t nnz = static_cast<int64_t>(ids.size());
    Tensor<float> table(ctx, {rows, dim}), out(ctx, {batch, dim}), grad_rows(ctx, {nnz, dim}),
        accum(ctx, {rows});
    zero_bytes(ctx, table.data(), table.bytes());
    zero_bytes(ctx, accum.data(), accum.bytes());
    auto d_offsets = make_tensor(ctx, offsets);
    auto d_ids = make_tensor(ctx, ids);
    Tensor<uint64_t> unique(ctx, {nnz});
    Tensor<int64_t> num_unique(ctx, {1});
    std::vector<bench::Row> rows_out;

    const double fwd_ms = bench::median_ms(
        ctx,
        [&] {
          kernels::pooled_lookup_forward<float>(ctx, kernels::Pooling::Mean, batch, dim,
                                                table.data(), rows, d_offsets.data(), d_ids.data(),
                                                out.data(), dim);
        },
        3, iters);
    const double fwd_bytes = nnz * (dim * 4.0 + 8) + (batch + 1) * 8.0 + batch * dim * 4.0;
    rows_out.push_back({"pooled lookup fwd (hist, mean)", fwd_ms, fwd_bytes / (fwd_ms * 1e6),
                        bw_ceiling, "GB/s",
                        fmt::format("B={} nnz={} dim={} rows=1M", batch, nnz, dim)});

    // The backward of the same bags over `bag_ids` (device): one row, and the unique rows it left
    // in `unique` / `grad_rows` / `num_unique` (the sparse update below applies them).
    const auto time_backward = [&](const char* name, const Tensor<uint64_t>& bag_ids,
                                   const std::string& note) {
      const double ms = bench::median_ms(
          ctx,
          [&] {
            kernels::pooled_lookup_backward<float>(ctx, kernels::Pooling::Mean, batch, dim,
                                                   d_offsets.data(), bag_ids.data(), nnz,
                                                   out.data(), dim, unique.data(), grad_rows.data(),
                                                   num_unique.data(), kernels::id_bits_for(rows));
          },
          3, iters);
      const int64_t unique_rows = to_host(ctx, num_unique.data(), 1)[0];
      const double bytes = nnz * 8.0 + batch * dim * 4.0 + unique_rows * (dim * 4.0 + 8);
      rows_out.push_back({name, ms, bytes / (ms * 1e6), bw_ceiling, "GB/s",
                          fmt::format("unique rows {}; {}", unique_rows, note)});
      return unique_rows;
    };

    // The same bags with Zipf-distributed ids (exponent 1.1 over the 1M rows): the few most
    // popular ids hold a large share of the positions (issue 14: such hot ids must not
    // serialise the backward; kernels/embedding.h sums them by chunks and lanes).
    std::vector<uint64_t> zipf(ids.size());
    {
      std::vector<double> cdf(static_cast<size_t>(rows));
      double total = 0;
      for (int64_t r = 0; r < rows; ++r) cdf[r] = total += std::pow(double(r + 1), -1.1);
      std::uniform_real_distribution<double> uniform(0.0, total);
      for (auto& id : zipf)
        id = static_cast<uint64_t>(std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) -
                                   cdf.begin());
    }
    time_backward("pooled lookup bwd (Zipf 1.1 ids)", make_tensor(ctx, zipf),
                  fmt::format("the top id at {} of {} positions",
                              std::count(zipf.begin(), zipf.end(), uint64_t{0}), nnz));
    const int64_t u = time_backward("pooled lookup bwd (sort+reduce)", d_ids,
                                    "bytes = ids + dout + unique grads");

    const double upd_ms = bench::median_ms(
        ctx,
        [&] {
          kernels::sparse_adagrad_update<float>(ctx, {0.01f, 1e-8f}, 1.0f / batch, dim,
                                                num_unique.data(), nnz, unique.data(),
                                                grad_rows.data(), table.data(), rows, accum.data());
        },
        3, iters);
    const double upd_bytes = u * (8.0 + dim * 4.0 * 3 + 4.0 * 2);
    rows_out.push_back({"sparse row-wise adagrad", upd_ms, upd_bytes / (upd_ms * 1e6), bw_ceiling,
                        "GB/s", "read grad+row+acc, write row+acc"});

    // ---- din-bench MLP: input 152 = hist 32 + target 32 + user 16 + 4 ctx x 16 + 8 dense,
    // 200 -> 80 -> 1, PReLU; forward + backward (dW and dx).
    nn::ParamSet<float> ps;
    nn::Mlp<float> mlp(ps, "mlp", 152,
                       nn::MlpConfig{{200, 80, 1}, {nn::ActivationKind::PReLU}, false});
    ps.allocate(ctx, 1);
    Tensor<float> x(ctx, {batch, 152}), dx(ctx, {batch, 152}), dout(ctx, {batch, 1});
    zero_bytes(ctx, x.data(), x.bytes());
    zero_bytes(ctx, dout.data(), dout.bytes());
    const double mlp_ms = bench::median_ms(
        ctx,
        [&] {
          mlp.forward(ctx, batch, x.data(), true);
          mlp.backward(ctx, batch, x.data(), dout.data(), dx.data());
        },
        3, iters);
    const double mlp_flops = 3.0 * 2.0 * batch * (152.0 * 200 + 200.0 * 80 + 80.0 * 1);
    rows_out.push_back({"DIN MLP 152-200-80-1 fwd+bwd", mlp_ms, mlp_flops / (mlp_ms * 1e6), sgemm,
                        "GF/s", "ceiling: measured large SGEMM"});

    // ---- The DIN unit's first activation: PReLU over (B·T, 80), T = 50, forward and backward
    // (dx written over dy, as the layer does). Memory-bound: bytes = what must be read and written.
    {
      const int64_t prows = batch * 50, pcols = 80;
      std::vector<float> px(static_cast<size_t>(prows * pcols));
      std::uniform_real_distribution<float> value(-1.0f, 1.0f);
      for (auto& v : px) v = value(rng);
      auto x_p = make_tensor(ctx, px), g_p = make_tensor(ctx, px);
      Tensor<float> y_p(ctx, {prows, pcols}), alpha(ctx, {pcols}), dalpha(ctx, {pcols});
      kernels::fill_constant<float>(ctx, pcols, 0.25f, alpha.data());
      zero_bytes(ctx, dalpha.data(), dalpha.bytes());
      const double n = static_cast<double>(prows * pcols);
      const double f_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::prelu_forward<float>(ctx, prows, pcols, x_p.data(), alpha.data(), y_p.data());
          },
          3, iters);
      rows_out.push_back({"PReLU fwd (DIN unit, B*T x 80)", f_ms, n * 8.0 / (f_ms * 1e6),
                          bw_ceiling, "GB/s", "read x, write y"});
      const double b_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::prelu_backward<float>(ctx, prows, pcols, x_p.data(), alpha.data(), g_p.data(),
                                           g_p.data(), dalpha.data());
          },
          3, iters);
      rows_out.push_back({"PReLU bwd (DIN unit, B*T x 80)", b_ms, n * 12.0 / (b_ms * 1e6),
                          bw_ceiling, "GB/s", "read x, dy, write dx (in place), dalpha"});
    }

    // ---- The DIN unit's first layer (kernels/din_unit.h) at din-bench shapes: target and history
    // of D = 32 (item 16 + category 16), T = 50 positions, 80 hidden units; the backward with
    // both input gradients. GF/s counts the multiply-adds of the decomposition
    // (kernels/din_unit.h): (B·T, 2D)·(2D, H) forward, twice that backward (dW and the inputs'
    // gradients).
    {
      const int64_t Tn = 50, D = 32, H = 80, urows = batch * Tn;
      std::vector<float> init(static_cast<size_t>(urows * D));
      std::uniform_real_distribution<float> value(-1.0f, 1.0f);
      for (auto& v : init) v = value(rng);
      auto k_u = make_tensor(ctx, init);
      init.resize(static_cast<size_t>(batch * D));
      auto q_u = make_tensor(ctx, init);
      init.resize(static_cast<size_t>(4 * D * H));
      for (auto& v : init) v = 0.1f * value(rng);
      auto w_u = make_tensor(ctx, init);
      Tensor<float> b_u(ctx, {H}), h_u(ctx, {urows, H}), dw_u(ctx, {4 * D, H}), db_u(ctx, {H}),
          dq_u(ctx, {batch, D}), dk_u(ctx, {urows, D});
      for (Tensor<float>* t : {&b_u, &dw_u, &db_u, &dq_u, &dk_u})
        zero_bytes(ctx, t->data(), t->bytes());
      const double flops = 2.0 * urows * 2 * D * H;
      const double f_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::din_unit_forward<float>(ctx, batch, Tn, D, H, q_u.data(), D, k_u.data(), D,
                                             w_u.data(), b_u.data(), h_u.data());
          },
          3, iters);
      rows_out.push_back({"DIN unit fwd (B*T x 128 -> 80)", f_ms, flops / (f_ms * 1e6), sgemm,
                          "GF/s", "ceiling: measured large SGEMM"});
      const double b_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::din_unit_backward<float>(ctx, batch, Tn, D, H, q_u.data(), D, k_u.data(), D,
                                              w_u.data(), h_u.data(), dw_u.data(), db_u.data(),
                                              dq_u.data(), D, dk_u.data(), D);
          },
          3, iters);
      rows_out.push_back({"DIN unit bwd (dW, dq, dk)", b_ms, 2.0 * flops / (b_ms * 1e6), sgemm,
                          "GF/s", "ceiling: measured large SGEMM"});
      // With its PReLU fused (what DinAttention runs): against the two rows above plus PReLU's.
      Tensor<float> a_u(ctx, {urows, H}), alpha_u(ctx, {H}), dalpha_u(ctx, {H});
      kernels::fill_constant<float>(ctx, H, 0.25f, alpha_u.data());
      zero_bytes(ctx, dalpha_u.data(), dalpha_u.bytes());
      const double ff_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::din_unit_prelu_forward<float>(ctx, batch, Tn, D, H, q_u.data(), D, k_u.data(),
                                                   D, w_u.data(), b_u.data(), alpha_u.data(),
                                                   h_u.data(), a_u.data());
          },
          3, iters);
      rows_out.push_back({"DIN unit + PReLU fwd, fused", ff_ms, flops / (ff_ms * 1e6), sgemm,
                          "GF/s", "ceiling: measured large SGEMM"});
      const double fb_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::din_unit_prelu_backward<float>(
                ctx, batch, Tn, D, H, q_u.data(), D, k_u.data(), D, w_u.data(), h_u.data(),
                alpha_u.data(), a_u.data(), dw_u.data(), db_u.data(), dalpha_u.data(), dq_u.data(),
                D, dk_u.data(), D);
          },
          3, iters);
      rows_out.push_back({"DIN unit + PReLU bwd, fused", fb_ms, 2.0 * flops / (fb_ms * 1e6), sgemm,
                          "GF/s", "da: the forward's a (scratch)"});
    }

    // ---- BST's attention (kernels/attention.h) at bst-bench shapes: L = 21 (20 history items and
    // the target), 8 heads of 4, lengths uniform in [1, 21]. GF/s counts the score and P·V
    // products over the valid keys (×2 in the backward).
    {
      const int64_t L = 21, heads = 8, dh = 4, d = heads * dh;
      std::vector<int64_t> lens(static_cast<size_t>(batch));
      double pairs = 0;
      for (auto& l : lens) {
        l = 1 + static_cast<int64_t>(rng() % L);
        pairs += static_cast<double>(L * l);
      }
      std::vector<float> init(static_cast<size_t>(batch * L * 3 * d));
      std::uniform_real_distribution<float> value(-1.0f, 1.0f);
      for (auto& v : init) v = value(rng);
      auto qkv = make_tensor(ctx, init), dout_a = make_tensor(ctx, init);
      auto lens_d = make_tensor(ctx, lens);
      Tensor<float> probs(ctx, {batch * heads * L, L}), out_a(ctx, {batch * L, d}),
          ds(ctx, {batch * heads * L, L}), dqkv(ctx, {batch * L, 3 * d});
      const double flops = 2.0 * 2.0 * pairs * heads * dh;
      const double f_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::attention_forward<float>(ctx, batch, L, heads, dh, 0.5f, lens_d.data(),
                                              qkv.data(), probs.data(), out_a.data());
          },
          3, iters);
      rows_out.push_back({"BST attention fwd (L 21, 8 heads of 4)", f_ms, flops / (f_ms * 1e6),
                          sgemm, "GF/s", "scores, softmax, P·V over the valid keys"});
      const double b_ms = bench::median_ms(
          ctx,
          [&] {
            kernels::attention_backward<float>(ctx, batch, L, heads, dh, 0.5f, lens_d.data(),
                                               qkv.data(), probs.data(), dout_a.data(), ds.data(),
                                               dqkv.data());
          },
          3, iters);
      rows_out.push_back(
          {"BST attention bwd", b_ms, 2.0 * flops / (b_ms * 1e6), sgemm, "GF/s", "dQ, dK, dV"});
    }

    bench::print_table(
        fmt::format("din-bench kernels on {} ({}), batch {}", device.str(), info.name, batch),
        rows_out);
    if (!json_path.empty()) {
      nlohmann::json j;
      j["device"] = device.str();
      j["device_name"] = info.name;
      j["batch"] = batch;
      j["bandwidth_ceiling_gbs"] = bw_ceiling;
      j["peak_fp32_gflops"] = info.peak_fp32_gflops;
      j["measured_sgemm_gflops"] = sgemm;
      for (const auto& r : rows_out)
        j["cases"].push_back({{"name", r.name},
                              {"median_ms", r.ms},
                              {"achieved", r.achieved},
                              {"ceiling", r.ceiling},
                              {"unit", r.unit},
                              {"note", r.note}});
      std::ofstream(json_path) << j.dump(2) << "\n";
    }
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
  return 0;
}

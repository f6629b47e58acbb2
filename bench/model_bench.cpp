// Forward + backward (+ optimizer update) time per batch of the DIN, BST and dual models at the
// din-bench, bst-bench and dual-bench shapes (../shared/DESIGN.md §6), with GFLOP/s of the dense
// work and the fraction of the FP32 ceiling; for the dual model also inference latency and
// samples/s of the teacher and of the exported student at batch 1, 64 and 4096.
//
//   lockstep-bench-models [--device cpu|cuda] [--batch N] [--iters N] [--models din,bst,dual]
//                         [--profile] [--no-cuda-graphs] [--allow-tf32|--allow-bf16]
//                         [--batches-on-device] [--tables hashed|dynamic]
//
// --profile also prints the host pass of a graph replay: the step's host code with every launch
// skipped (train/step_graphs.h), and how many launches a step makes.
//
// FLOPs count the dense layers as written in the papers (the DIN unit on [q, k, q−k, q⊙k] as a
// 4D × 80 layer even though lockstep never materialises that input), forward ×3 for
// forward + backward (dX and dW); embedding lookups and element-wise work are not counted.

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "bench/bench_util.h"
#include "lockstep/core/device_info.h"
#include "lockstep/core/launch_recorder.h"
#include "lockstep/core/logging.h"
#include "lockstep/core/profile.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/bst.h"
#include "lockstep/models/din.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/serving/student_model.h"
#include "lockstep/train/local_trainer.h"

using namespace lockstep;

namespace {
std::vector<std::string> columns_of(const data::Schema& schema) {
  std::vector<std::string> names;
  for (int64_t c : schema.sparse_columns()) names.push_back(schema.columns()[c].name);
  return names;
}

/// --tables dynamic: feasign stores (docs/feasign_store.md) with room for twice the hashed rows
/// (no eviction: the steady state of a table with room) and every feasign admitted at once, so
/// each record updates its embedx as a hashed row would be updated.
bool g_dynamic = false;

/// din-bench tables: 1M items, 10k categories, 1M users, 4 context fields of 25k; dim 16.
void bench_tables(const data::Schema& schema, int64_t max_len,
                  std::vector<embedding::TableConfig>& tables,
                  std::vector<embedding::FieldConfig>& fields) {
  for (const auto& name : columns_of(schema)) {
    std::string table = name == "hist_items" ? "item" : name == "hist_cats" ? "item_cat" : name;
    const int64_t rows = table == "item" || table == "user" ? 1000000
                         : table == "item_cat"              ? 10000
                                                            : 25000;
    if (table == name) tables.push_back({name, rows, 16});
    if (table == name && g_dynamic) {
      tables.back().kind = embedding::TableKind::Dynamic;
      tables.back().rows = 2 * rows;
      tables.back().accessor.embedx_threshold = 0;
    }
    fields.push_back({name, table, name.rfind("hist_", 0) == 0 ? max_len : 0});
  }
}

/// What a step replayed from a CUDA graph still costs the host (train/step_graphs.h): the
/// forward and backward's host code with every launch skipped and logged, as the replay's host
/// pass runs it. Printed with the launches it skips (what eager execution launches one by one).
void host_pass(Context& ctx, models::Model<float>& model, const data::Batch& batch, int iters,
               const std::string& title) {
  train::LocalTrainer<float> trainer(model, ctx);
  trainer.set_graphs(false);  // the recorder is attached here instead
  const auto& staged = trainer.stage(batch);
  trainer.compute_gradients(staged);  // sizes every buffer
  LaunchRecorder recorder;
  recorder.set_mode(LaunchRecorder::Mode::Skip);
  ctx.set_recorder(&recorder);
  // Host time: in Skip mode nothing is enqueued, so events on the stream would time nothing.
  const double ms = bench::median_host_ms(
      ctx,
      [&] {
        recorder.clear();
        trainer.compute_gradients(staged);
      },
      3, iters);
  ctx.set_recorder(nullptr);
  std::printf("%s: host pass of a graph replay %.1f us (%zu launches skipped)\n", title.c_str(),
              ms * 1e3, recorder.log().size());
}

/// Batches staged once before the timing with --batches-on-device (as torch_bench.py keeps its
/// batches on the device).
constexpr int kBatchesOnDevice = 8;

/// Median milliseconds of one training step (forward, backward, optimizer update, the loss read)
/// on `batch`, staged in the step (host layout and copy) or, with `on_device`, on the next of
/// kBatchesOnDevice batches from `gen` staged before the timing. With `profile`, then `iters`
/// more steps with a Profile attached, printed under `title`.
double step_ms(Context& ctx, models::Model<float>& model, const data::SyntheticGenerator& gen,
               const data::Batch& batch, bool on_device, int iters, bool profile,
               const std::string& title) {
  train::LocalTrainer<float> trainer(model, ctx);
  std::vector<models::DeviceBatch<float>> staged(on_device ? kBatchesOnDevice : 0);
  for (size_t i = 0; i < staged.size(); ++i)
    model.stage(ctx, gen.generate(static_cast<int64_t>(i) * batch.size, batch.size), staged[i]);
  size_t next = 0;
  const auto step = [&] {
    if (!on_device) {
      trainer.step(batch);
      return;
    }
    const models::DeviceBatch<float>& b = staged[next++ % staged.size()];
    const float* loss = trainer.compute_gradients(b);
    model.apply_gradients(ctx, 1.0f / static_cast<float>(b.size()));
    float value = 0.0f;  // the step's one read, as LocalTrainer::step
    to_host(ctx, loss, 1, &value);
  };
  // On-device batches: every one seen 4 times before the timing. A graph is captured on the
  // third sight of a shape whose two runs before logged the same launches
  // (train/step_graphs.h); in the first round later batches grow buffers that earlier ones
  // use, so their first two sights may differ. As the steps of one staged batch after 3.
  const int warmup = on_device ? 4 * kBatchesOnDevice : 3;
  const double ms = bench::median_ms(ctx, step, warmup, iters);
  if (trainer.graphs()) {
    const train::GraphStats g = trainer.graph_stats();
    std::printf("%s: CUDA graphs: %lld steps replayed, %lld captured, %lld eager, %lld fallbacks\n",
                title.c_str(), static_cast<long long>(g.replayed),
                static_cast<long long>(g.captured), static_cast<long long>(g.eager),
                static_cast<long long>(g.fallbacks));
  }
  if (profile) {
    Profile p;
    {
      const ScopedProfile attached(ctx, &p);
      for (int i = 0; i < iters; ++i) step();
    }
    host_pass(ctx, model, batch, iters, title);
    std::printf("\n%s: step profile on %s, %d steps (unprofiled median %.3f ms)\n%s", title.c_str(),
                ctx.device().str().c_str(), iters, ms, p.table(iters).c_str());
  }
  return ms;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep DIN/BST forward+backward benchmark at din-bench/bst-bench shapes"};
  std::string device_flag = "auto", which = "din,bst,dual";
  int64_t batch = 0;
  int iters = 10;
  app.add_option("--device", device_flag, "auto, cpu, cuda");
  app.add_option("--batch", batch, "samples per batch (default 4096 on GPU, 1024 on CPU)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--iters", iters, "timed iterations")->check(CLI::Range(1, 100000));
  app.add_option("--models", which, "any of din, bst, dual, comma-separated");
  std::string tables = "hashed";
  app.add_option("--tables", tables,
                 "hashed, or dynamic: feasign stores with room for every key, every feasign "
                 "admitted (docs/feasign_store.md)")
      ->check(CLI::IsMember({"hashed", "dynamic"}));
  bool profile = false, tf32 = false, bf16 = false, no_graphs = false, on_device = false;
  app.add_flag("--allow-tf32", tf32, "TF32 tensor-core GEMMs on CUDA");
  app.add_flag("--allow-bf16", bf16, "bf16 tensor-core GEMMs on CUDA (fp32 accumulation)");
  app.add_flag("--no-cuda-graphs", no_graphs,
               "launch every kernel instead of replaying CUDA graphs");
  app.add_flag("--batches-on-device", on_device,
               "train on 8 batches staged before the timing, as ../shared/peers/torch_bench.py "
               "keeps its batches on the device (default: each step stages its batch, host "
               "layout and copy, which the trainer does one step ahead)");
  app.add_flag("--profile", profile,
               "also print where each step's time goes: phases and kernels (lockstep/core/profile.h)");
  CLI11_PARSE(app, argc, argv);
  g_dynamic = tables == "dynamic";
  try {
    const Device device = select_device(device_flag);
    ContextOptions options;
    options.allow_tf32 = tf32;
    options.allow_bf16 = bf16;
    options.cuda_graphs = !no_graphs;
    Context ctx(device, options);
    if (batch == 0) batch = device.is_cuda() ? 4096 : 1024;
    const DeviceInfo info = query_device_info(device);
    std::vector<bench::Row> rows;
    if (which.find("din") != std::string::npos) {
      const data::SyntheticGenerator gen(data::SyntheticConfig::din_bench());
      const data::Batch b = gen.generate(0, batch);
      models::DinConfig c;
      bench_tables(gen.schema(), 50, c.tables, c.fields);
      models::Din<float> model(c, columns_of(gen.schema()), gen.schema().num_dense(), ctx);
      const int64_t T = 50, D = 32, in = model.input_width();
      const double fwd = 2.0 * batch * (T * (4.0 * D * 80 + 80.0 * 40 + 40) + in * 200.0 + 200.0 * 80 + 80);
      const double ms = step_ms(ctx, model, gen, b, on_device, iters, profile, "din-bench");
      rows.push_back({"din-bench step (fwd+bwd+update)", ms, 3 * fwd / (ms * 1e6),
                      info.peak_fp32_gflops, "GF/s",
                      fmt::format("B={} T=50 unit 128-80-40-1, MLP {}-200-80-1", batch, in)});
    }
    if (which.find("bst") != std::string::npos) {
      auto cfg = data::SyntheticConfig::din_bench();
      cfg.max_history = 20;  // bst-bench: sequence length 20 + target
      const data::SyntheticGenerator gen(cfg);
      const data::Batch b = gen.generate(0, batch);
      models::BstConfig c;
      bench_tables(gen.schema(), 20, c.tables, c.fields);
      models::Bst<float> model(c, columns_of(gen.schema()), gen.schema().num_dense(), ctx);
      const double L = 21, d = 32, f = 32, in = static_cast<double>(model.input_width());
      const double block = 2.0 * L * (d * 3 * d + d * d + 2 * d * f) + 4.0 * L * L * d;
      const double fwd = batch * (block + 2.0 * (in * 1024 + 1024.0 * 512 + 512.0 * 256 + 256));
      const double ms = step_ms(ctx, model, gen, b, on_device, iters, profile, "bst-bench");
      rows.push_back({"bst-bench step (fwd+bwd+update)", ms, 3 * fwd / (ms * 1e6),
                      info.peak_fp32_gflops, "GF/s",
                      fmt::format("B={} L=21 d=32 8 heads, MLP 1024-512-256-1", batch)});
    }
    std::vector<std::string> latency;
    if (which.find("dual") != std::string::npos) {
      const data::SyntheticGenerator gen(data::SyntheticConfig::din_bench());
      const data::Batch b = gen.generate(0, batch);
      models::DualConfig c;
      c.student_residual = !g_dynamic;  // residual tables are built for hashed tables only
      bench_tables(gen.schema(), 0, c.tables, c.fields);  // every column pooled (both towers)
      for (const auto& name : columns_of(gen.schema()))   // + the history as sequences (teacher)
        if (name.rfind("hist_", 0) == 0)
          c.fields.push_back({name, name == "hist_items" ? "item" : "item_cat", 50});
      models::DualDnn<float> model(c, columns_of(gen.schema()), gen.schema().num_dense(), ctx);
      const double ms = step_ms(ctx, model, gen, b, on_device, iters, profile, "dual-bench");
      const double w0 = 9 * 16 + 8, wt = w0 + 32 + w0;  // shared input; teacher input
      const double fwd = 2.0 * batch *
                         (50 * (4.0 * 32 * 80 + 80.0 * 40 + 40) + 3 * 2 * w0 + wt * 512 +
                          512.0 * 256 + 256.0 * 128 + 128 + w0 * 128 + 128.0 * 64 + 64);
      rows.push_back({"dual-bench step (fwd+bwd+update)", ms, 3 * fwd / (ms * 1e6),
                      info.peak_fp32_gflops, "GF/s",
                      fmt::format("B={}: {:.0f} samples/s; teacher DIN + 3 cross + 512-256-128, "
                                  "student 128-64",
                                  batch, batch / (ms * 1e-3))});
      const std::string dir = fmt::format("/tmp/lockstep-bench-student-{}", ::getpid());
      model.export_student(ctx, dir, columns_of(gen.schema()));
      serving::StudentModel student(dir, ctx);
      for (int64_t n : {int64_t{1}, int64_t{64}, int64_t{4096}}) {
        const data::Batch q = gen.generate(1000000, n);
        model.set_output(models::DualDnn<float>::Output::Teacher);
        const double t_ms = bench::median_ms(ctx, [&] { model.forward(ctx, q, false); }, 3, iters);
        const double s_ms = bench::median_ms(ctx, [&] { student.predict(q); }, 3, iters);
        latency.push_back(fmt::format("{:>6} {:>14.3f} {:>14.0f} {:>14.3f} {:>14.0f} {:>8.1f}x", n,
                                      t_ms, n / (t_ms * 1e-3), s_ms, n / (s_ms * 1e-3), t_ms / s_ms));
      }
      std::filesystem::remove_all(dir);
    }
    if (on_device)
      for (bench::Row& r : rows)
        if (r.name.find("step") != std::string::npos)
          r.note += fmt::format("; {} batches on the device", kBatchesOnDevice);
    if (g_dynamic)
      for (bench::Row& r : rows)
        if (r.name.find("step") != std::string::npos) r.note += "; dynamic tables";
    bench::print_table(fmt::format("models on {} ({}), ceiling = theoretical FP32 peak",
                                   device.str(), info.name),
                       rows);
    if (!latency.empty()) {
      std::printf("\ndual DNN inference on %s: teacher = the dual model's forward (both towers), "
                  "student = the exported bundle (serving::StudentModel)\n%6s %14s %14s %14s %14s "
                  "%9s\n",
                  device.str().c_str(), "batch", "teacher ms", "teacher /s", "student ms",
                  "student /s", "ratio");
      for (const auto& line : latency) std::printf("%s\n", line.c_str());
    }
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
  return 0;
}

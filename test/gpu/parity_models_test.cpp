// Whole-model CUDA vs CPU parity for DIN, BST, the dual DNN and LR/FM/DeepFM (float): identical
// initial weights, close logits, close dense and sparse gradients of one step, and close parameters
// after one update. Tolerances as in the EmbeddingMlp parity test (parity_core_test.cpp).

#include <catch2/catch.hpp>

#include <functional>
#include <memory>

#include "gpu_util.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"

using namespace lockstep;

namespace {

using ModelFactory = std::function<std::unique_ptr<models::Model<float>>(const Context&)>;

/// The sparse gradient of a table on the host: (ids, rows), count() rows.
std::pair<std::vector<uint64_t>, std::vector<float>> sparse_grad(
    const Context& ctx, const embedding::EmbeddingTable<float>& table) {
  const auto& g = table.grad();
  if (!g.ready()) return {};
  const int64_t n = to_host(ctx, g.count(), 1)[0];
  return {to_host(ctx, g.ids(), n), to_host(ctx, g.rows(), n * table.dim())};
}

void require_model_parity(test::ParityContexts& ctx, const ModelFactory& make) {
  auto cpu = make(ctx.cpu);
  auto gpu = make(ctx.gpu);
  INFO(cpu->name());
  test::require_bitwise_equal(test::all_parameters(ctx.gpu, *gpu),
                              test::all_parameters(ctx.cpu, *cpu), "initial parameters");

  // Forward (inference mode: no statistics move, no dropout).
  const data::Batch batch = test::fixture_batch(0, 513, 20);
  const auto z_cpu = to_host(ctx.cpu, cpu->forward(ctx.cpu, batch, false), batch.size);
  const auto z_gpu = to_host(ctx.gpu, gpu->forward(ctx.gpu, batch, false), batch.size);
  test::require_close(z_gpu, z_cpu, 1e-5, 1e-4, "logits");

  // Backward: the summed loss, dense gradients and every table's sparse gradient.
  train::LocalTrainer<float> t_cpu(*cpu, ctx.cpu), t_gpu(*gpu, ctx.gpu);
  const data::Batch b = test::fixture_batch(1000, 300, 20);
  const double l_cpu = to_host(ctx.cpu, t_cpu.compute_gradients(t_cpu.stage(b)), 1)[0];
  const double l_gpu = to_host(ctx.gpu, t_gpu.compute_gradients(t_gpu.stage(b)), 1)[0];
  CHECK(l_gpu == Approx(l_cpu).epsilon(1e-4));
  auto& ps_cpu = cpu->dense_params();
  auto& ps_gpu = gpu->dense_params();
  const auto g_cpu = to_host(ctx.cpu, ps_cpu.grads(), ps_cpu.trainable_size());
  const auto g_gpu = to_host(ctx.gpu, ps_gpu.grads(), ps_gpu.trainable_size());
  REQUIRE(test::any_nonzero(g_cpu));
  test::require_close(g_gpu, g_cpu, 1e-4, 1e-3, "dense gradients");
  const auto tables_cpu = cpu->tables(), tables_gpu = gpu->tables();
  REQUIRE(tables_cpu.size() == tables_gpu.size());
  for (size_t t = 0; t < tables_cpu.size(); ++t) {
    INFO("table " << tables_cpu[t]->config().name);
    REQUIRE(tables_gpu[t]->grad().ready() == tables_cpu[t]->grad().ready());
    const auto [ids_cpu, rows_cpu] = sparse_grad(ctx.cpu, *tables_cpu[t]);
    const auto [ids_gpu, rows_gpu] = sparse_grad(ctx.gpu, *tables_gpu[t]);
    test::require_bitwise_equal(ids_gpu, ids_cpu, "sparse gradient rows");
    test::require_close(rows_gpu, rows_cpu, 1e-4, 1e-3, "sparse gradients");
  }

  // One update.
  cpu->apply_gradients(ctx.cpu, 1.0f / static_cast<float>(b.size));
  gpu->apply_gradients(ctx.gpu, 1.0f / static_cast<float>(b.size));
  // Adam/Adagrad normalise steps: compare with an absolute tolerance of a few learning rates.
  test::require_close(test::all_parameters(ctx.gpu, *gpu), test::all_parameters(ctx.cpu, *cpu),
                      5e-3, 1e-3, "parameters after one update");
}

/// The fixture's data read by a dual DNN whose teacher is FM + BST (mean read-out) and whose
/// distillation is the tempered BCE.
std::unique_ptr<models::Model<float>> dual_fm_bst(const Context& ctx) {
  models::DualConfig c;
  const auto base = test::fixture_config();
  c.tables = base.tables;
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item"}, {"hist", "item", 4}};
  c.components = {"fm", "bst"};
  c.fm_fields = {"item", "hist"};
  c.bst_target = {"item"};
  c.bst_sequence = {"hist"};
  c.bst.transformer.heads = 2;
  c.bst.transformer.ffn_width = 8;
  c.bst.readout = nn::BstReadout::Mean;
  c.teacher_mlp = {{16, 8, 1}, {nn::ActivationKind::PReLU}, false};
  c.student_mlp = {{8, 4, 1}, {nn::ActivationKind::PReLU}, false};
  c.kd = models::KdLoss::Bce;
  c.temperature = 2.0f;
  c.student_embedding_scale = 1;
  c.student_embedding_losses = models::StudentEmbeddingLosses::All;
  c.seed = 5;
  return std::make_unique<models::DualDnn<float>>(c, test::fixture_columns(), 3, ctx);
}

/// The fixture's data read by embedding_mlp with [model.fm]: first-order tables (dim 1, sum)
/// first, then user and item of width 4; an MLP when `mlp` (DeepFM), else LR or FM.
std::unique_ptr<models::Model<float>> fm_model(const Context& ctx, bool second, bool mlp) {
  using embedding::Pooling;
  models::EmbeddingMlpConfig c;
  c.tables = {{"user.linear", 101, 1, Pooling::Sum, 0.1f},
              {"item.linear", 257, 1, Pooling::Sum, 0.1f}};
  c.fields = {{"user", "user.linear"}, {"item", "item.linear"}, {"hist", "item.linear"}};
  c.fm.first_order = true;
  c.fm.linear_tables = {"user.linear", "item.linear"};
  c.fm.second_order = second;
  if (second || mlp) {
    c.tables.push_back({"user", 101, 4, Pooling::Sum, 0.1f});
    c.tables.push_back({"item", 257, 4, Pooling::Mean, 0.1f});
    c.fields.insert(c.fields.end(), {{"user", "user"}, {"item", "item"}, {"hist", "item"}});
  }
  c.use_dense = mlp;
  c.mlp = mlp ? nn::MlpConfig{{16, 8, 1}, {nn::ActivationKind::ReLU}, false}
              : nn::MlpConfig{{}, {}, false};
  c.seed = 5;
  return std::make_unique<models::EmbeddingMlp<float>>(c, test::fixture_columns(), 3, ctx);
}

}  // namespace

TEST_CASE("LR, FM and DeepFM on CUDA: identical initial weights, close logits, gradients, update",
          "[gpu][model][fm]") {
  test::ParityContexts ctx;
  const std::pair<bool, bool> kinds[] = {{false, false}, {true, false}, {true, true}};
  for (const auto& [second, mlp] : kinds) {
    INFO("second_order " << second << " mlp " << mlp);
    require_model_parity(ctx,
                         [s = second, m = mlp](const Context& c) { return fm_model(c, s, m); });
  }
}

TEST_CASE("DIN on CUDA: identical initial weights, close logits, gradients and update",
          "[gpu][model][din]") {
  test::ParityContexts ctx;
  require_model_parity(ctx, [](const Context& c) { return test::fixture_din(c); });
}

TEST_CASE("BST on CUDA: identical initial weights, close logits, gradients and update",
          "[gpu][model][bst]") {
  test::ParityContexts ctx;
  require_model_parity(ctx, [](const Context& c) { return test::fixture_bst(c); });
}

TEST_CASE("Dual DNN on CUDA: identical initial weights, close logits, gradients and update",
          "[gpu][model][dual]") {
  test::ParityContexts ctx;
  for (auto mode : {models::DualMode::Joint, models::DualMode::StudentOnly}) {
    INFO(models::dual_mode_name(mode));
    require_model_parity(ctx, [mode](const Context& c) { return test::fixture_dual(c, mode); });
  }
  INFO("teacher fm + bst (mean read-out), bce distillation");
  require_model_parity(ctx, dual_fm_bst);
}

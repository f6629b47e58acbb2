// The dual DNN: gradients (finite differences, double), gradient blocking between student and
// teacher, student-only training, and the exported student bundle.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "table_grad.h"
#include "data_test_util.h"
#include "gradcheck.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/serving/student_model.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/local_trainer.h"
#include "model_fixture.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const std::vector<std::string> kColumns = {"user", "item", "hist"};

/// user (4), item (4) pooled; hist pooled (mean, for the student) and as a sequence (teacher).
models::DualConfig dual_config(std::vector<std::string> components) {
  models::DualConfig c;
  c.tables = {{"user", 11, 4, embedding::Pooling::Sum, 0.4f},
              {"item", 17, 4, embedding::Pooling::Mean, 0.4f}};
  c.fields = {{"user", "user"}, {"item", "item"}, {"hist", "item"}, {"hist", "item", 3}};
  c.components = std::move(components);
  c.fm_fields = {"user", "item", "hist"};
  c.cross_layers = 2;
  c.din_query = {"item"};
  c.din_keys = {"hist"};
  c.din_attention.hidden = {5, 3};
  c.bst_target = {"item"};
  c.bst_sequence = {"hist"};
  c.bst.transformer.heads = 2;
  c.bst.transformer.ffn_width = 3;
  c.teacher_mlp = {{6, 5, 1}, {nn::ActivationKind::PReLU}, false};
  c.student_mlp = {{4, 3, 1}, {nn::ActivationKind::PReLU}, false};
  c.seed = 3;
  return c;
}

const std::vector<std::string> kAll = {"fm", "cross", "din", "bst"};

template <class T>
std::vector<int64_t> trainable_range(const nn::ParamSet<T>& ps, int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (const auto& e : ps.entries())
    if (e.trainable && e.offset >= begin && e.offset < end)
      for (int64_t i = 0; i < e.numel(); ++i) out.push_back(e.offset + i);
  return out;
}

/// Runs forward + loss_and_backward and checks the analytic gradients of the dense parameters in
/// [begin, end) (and of the tables when `tables`) against finite differences of the total loss.
void check_dual_gradients(models::DualConfig cfg, int64_t begin_from_student, bool tables) {
  Context ctx;
  models::DualDnn<double> model(cfg, kColumns, 3, ctx);
  const data::Batch batch = test::fixture_batch(7, 5, 4);
  embedding::DeviceBatch<double> staged;
  model.stage(ctx, batch, staged);
  double loss_sum = 0;  // CPU context: device memory is host memory
  const auto loss = [&] {
    model.forward(ctx, staged, true);
    model.loss_and_backward(ctx, staged, &loss_sum);
    return loss_sum;
  };
  model.zero_grad(ctx);
  model.forward(ctx, staged, true);
  model.loss_and_backward(ctx, staged, &loss_sum);
  auto& ps = model.dense_params();
  const std::vector<double> analytic(ps.grads(), ps.grads() + ps.size());
  std::vector<std::vector<double>> table_grads;
  for (auto* table : model.tables()) {
    table_grads.push_back(test::dense_table_grad(*table));
  }
  const int64_t begin = begin_from_student ? model.student_begin() : 0;
  test::check_gradient("dense parameters", loss, ps.values(), analytic.data(), ps.size(),
                       trainable_range(ps, begin, ps.trainable_size()), 1e-6, 5e-6, 1e-3);
  if (tables) {
    auto all = model.tables();
    for (size_t t = 0; t < all.size(); ++t)
      test::check_gradient(all[t]->config().name, loss, all[t]->weights(), table_grads[t].data(),
                           all[t]->rows() * all[t]->dim(), {}, 1e-6, 5e-6, 1e-3);
  }
}
}  // namespace

TEST_CASE("Dual DNN: gradients of teacher, student and embeddings (FM, cross, DIN, BST)",
          "[dual][gradcheck]") {
  // Without distillation terms every gradient is the true derivative of the total loss; with
  // student_updates_embeddings the student's losses reach the embeddings too.
  for (const auto& components : {kAll, std::vector<std::string>{"fm"}, std::vector<std::string>{"cross"}}) {
    DYNAMIC_SECTION(fmt::format("{}", fmt::join(components, "+"))) {
      auto cfg = dual_config(components);
      cfg.kd_weight = 0;
      cfg.hint_weight = 0;
      cfg.student_updates_embeddings = true;
      check_dual_gradients(cfg, false, true);
    }
  }
}

TEST_CASE("Dual DNN: KD (mse, bce with temperature) and hint gradients reach the student",
          "[dual][gradcheck]") {
  // Teacher outputs are constants for the student (stop_grad), so the finite differences of the
  // total loss with respect to student parameters equal the analytic student gradients.
  for (auto kd : {models::KdLoss::Mse, models::KdLoss::Bce}) {
    for (bool projection : {true, false}) {
      DYNAMIC_SECTION(models::kd_loss_name(kd) << " projection=" << projection) {
        auto cfg = dual_config({"din", "cross"});
        cfg.kd = kd;
        cfg.kd_weight = 0.7f;
        cfg.temperature = 2.0f;
        cfg.hint_weight = 0.3f;
        if (!projection) cfg.student_mlp.widths = {4, 5, 1};  // hidden width 5 = teacher's
        check_dual_gradients(cfg, true, false);
      }
    }
  }
}

namespace {
struct Split {
  std::vector<float> teacher, student, tables;
};
Split split_state(const Context& ctx, models::DualDnn<float>& m) {
  Split s;
  auto& ps = m.dense_params();
  const auto values = to_host(ctx, ps.values(), ps.size());
  s.teacher.assign(values.begin(), values.begin() + m.student_begin());
  s.student.assign(values.begin() + m.student_begin(), values.begin() + ps.trainable_size());
  for (auto* t : m.tables())
    for (const auto& [name, v] : t->to_host(ctx)) s.tables.insert(s.tables.end(), v.begin(), v.end());
  return s;
}
}  // namespace

TEST_CASE("Student losses never reach the teacher; embeddings only with the option",
          "[dual][blocking]") {
  Context ctx;
  for (bool option : {false, true}) {
    DYNAMIC_SECTION("student_updates_embeddings=" << option) {
      auto cfg = dual_config(kAll);
      cfg.teacher_weight = 0;  // a step driven only by student losses (BCE, KD, hint)
      cfg.student_updates_embeddings = option;
      models::DualDnn<float> model(cfg, kColumns, 3, ctx);
      const Split before = split_state(ctx, model);
      train::LocalTrainer<float> trainer(model, ctx);
      trainer.step(test::fixture_batch(0, 32, 4));
      const Split after = split_state(ctx, model);
      test::require_bitwise_equal(after.teacher, before.teacher, "teacher parameters");
      CHECK(after.student != before.student);
      if (option)
        CHECK(after.tables != before.tables);
      else
        test::require_bitwise_equal(after.tables, before.tables, "embeddings (copy-and-freeze)");
    }
  }
}

TEST_CASE("Student-only mode changes only the student, from a warm start", "[dual][student_only]") {
  Context ctx;
  test::TempDir dir;
  auto joint_cfg = dual_config(kAll);
  joint_cfg.teacher_mlp.activation.kind = nn::ActivationKind::Dice;  // teacher state: Dice stats
  models::DualDnn<float> joint(joint_cfg, kColumns, 3, ctx);
  train::LocalTrainer<float> joint_trainer(joint, ctx);
  for (int i = 0; i < 3; ++i) joint_trainer.step(test::fixture_batch(100 * i, 32, 4));
  train::CheckpointMeta meta;
  meta.model = "dual";
  const std::string ckpt = train::write_checkpoint(dir.file("ckpt"), meta, joint, ctx);

  auto online_cfg = joint_cfg;
  online_cfg.mode = models::DualMode::StudentOnly;
  models::DualDnn<float> online(online_cfg, kColumns, 3, ctx);
  train::read_checkpoint(ckpt, online, ctx, 0);  // warm start, optimizer state included
  auto& ps = online.dense_params();
  const auto all_before = to_host(ctx, ps.values(), ps.size());
  const Split before = split_state(ctx, online);
  std::vector<std::vector<float>> opt_before;
  for (auto& [name, t] : online.dense_optimizer().state()) opt_before.push_back(to_host(ctx, *t));
  train::LocalTrainer<float> trainer(online, ctx);
  for (int i = 0; i < 3; ++i) trainer.step(test::fixture_batch(1000 + 100 * i, 32, 4));
  const auto all_after = to_host(ctx, ps.values(), ps.size());
  const Split after = split_state(ctx, online);
  test::require_bitwise_equal(after.teacher, before.teacher, "teacher parameters");
  test::require_bitwise_equal(after.tables, before.tables, "embeddings and their optimizer state");
  // Non-trainable state after the student's region: the teacher's Dice running averages.
  test::require_bitwise_equal(std::vector<float>(all_after.begin() + ps.trainable_size(), all_after.end()),
                              std::vector<float>(all_before.begin() + ps.trainable_size(), all_before.end()),
                              "teacher running statistics");
  size_t k = 0;
  for (auto& [name, t] : online.dense_optimizer().state()) {
    const auto now = to_host(ctx, *t);
    test::require_bitwise_equal(std::vector<float>(now.begin(), now.begin() + online.student_begin()),
                                std::vector<float>(opt_before[k].begin(), opt_before[k].begin() + online.student_begin()),
                                "teacher optimizer state " + name);
    ++k;
  }
  CHECK(after.student != before.student);
}

TEST_CASE("The exported student predicts like the student in training; bad bundles are refused",
          "[dual][export]") {
  Context ctx;
  test::TempDir dir;
  models::DualDnn<float> model(dual_config(kAll), kColumns, 3, ctx);
  train::LocalTrainer<float> trainer(model, ctx);
  for (int i = 0; i < 4; ++i) trainer.step(test::fixture_batch(50 * i, 32, 4));
  const std::string bundle = dir.file("student");
  model.export_student(ctx, bundle, kColumns);
  for (const auto& f : std::filesystem::directory_iterator(bundle))
    CHECK(f.path().filename().string().find("teacher") == std::string::npos);
  std::ifstream manifest(bundle + "/manifest.json");
  const std::string text(std::istreambuf_iterator<char>(manifest), {});
  CHECK(text.find("teacher") == std::string::npos);

  const data::Batch batch = test::fixture_batch(5000, 64, 4);
  const auto in_training = trainer.predict(batch);  // the student: the model's primary output
  serving::StudentModel student(bundle, ctx);
  const auto served = student.predict(batch);
  // Same kernels in the same order: equal to float rounding (observed: bitwise).
  test::require_close(served, in_training, 1e-7, 1e-6, "exported vs in-training student");
  CHECK(student.columns() == kColumns);

  {  // flip a byte of the table data: refused, naming the file
    const std::string path = bundle + "/embeddings.safetensors";
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-8, std::ios::end);
    f.put('\x7f');
  }
  CHECK_THROWS_WITH(serving::StudentModel(bundle, ctx),
                    Contains("embeddings.safetensors") && Contains("corrupted"));
  CHECK_THROWS_WITH(serving::StudentModel(dir.file("nothing"), ctx), Contains("manifest.json"));
}

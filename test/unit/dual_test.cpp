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
  // Seed 002's recipe unless a test says otherwise: copy-and-freeze, no student residual tables,
  // KD 1 from the first step, hint 0.1.
  c.student_residual = false;
  c.kd_weight = 1.0f;
  c.kd_warmup_steps = 0;
  c.hint_weight = 0.1f;
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
/// [begin, end) (and of the tables when `tables`) against finite differences of the total loss
/// (of table_scale × the total loss for the tables).
void check_dual_gradients(models::DualConfig cfg, int64_t begin_from_student, bool tables,
                          double table_scale = 1.0) {
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
    const auto scaled_loss = [&] { return table_scale * loss(); };
    auto all = model.tables();
    for (size_t t = 0; t < all.size(); ++t)
      test::check_gradient(all[t]->config().name, scaled_loss, all[t]->weights(),
                           table_grads[t].data(), all[t]->rows() * all[t]->dim(), {}, 1e-6, 5e-6,
                           1e-3);
  }
}

/// The gradients of one forward + loss_and_backward (double), after `steps_done` optimizer steps
/// (the KD warm-up reads the step count).
struct Grads {
  std::vector<double> dense, tables;
  double loss = 0;
};
Grads dual_grads(const models::DualConfig& cfg, int64_t steps_done = 0) {
  Context ctx;
  models::DualDnn<double> model(cfg, kColumns, 3, ctx);
  model.dense_optimizer().set_step_count(steps_done);
  embedding::DeviceBatch<double> staged;
  model.stage(ctx, test::fixture_batch(7, 5, 4), staged);
  Grads g;
  model.zero_grad(ctx);
  model.forward(ctx, staged, true);
  model.loss_and_backward(ctx, staged, &g.loss);
  auto& ps = model.dense_params();
  g.dense.assign(ps.grads(), ps.grads() + ps.trainable_size());
  for (auto* table : model.tables()) {
    const auto t = test::dense_table_grad(*table);
    g.tables.insert(g.tables.end(), t.begin(), t.end());
  }
  return g;
}

void require_close(const std::vector<double>& a, const std::vector<double>& b, double tol,
                   const std::string& what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  CHECK(worst <= tol);
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
      cfg.student_embedding_scale = 1;
      check_dual_gradients(cfg, false, true);
    }
  }
}

TEST_CASE("Dual DNN: a scaled student gradient reaches the embeddings", "[dual][gradcheck]") {
  // Student terms only (teacher_weight = 0): the tables' gradient is scale × the derivative of
  // the student's loss, the student's parameters get all of it.
  for (auto losses : {models::StudentEmbeddingLosses::Label, models::StudentEmbeddingLosses::All}) {
    DYNAMIC_SECTION("student_embedding_losses=" << models::student_embedding_losses_name(losses)) {
      auto cfg = dual_config({"din", "cross"});
      cfg.teacher_weight = 0;
      cfg.kd_weight = 0;
      cfg.hint_weight = 0;
      cfg.student_embedding_scale = 0.4f;
      cfg.student_embedding_losses = losses;
      check_dual_gradients(cfg, true, true, 0.4);
    }
  }
}

TEST_CASE("Dual DNN: with student_embedding_losses = label, KD and hint train only the student's "
          "MLP; the scale is linear",
          "[dual][gradcheck]") {
  for (auto kd : {models::KdLoss::Mse, models::KdLoss::Bce}) {
    DYNAMIC_SECTION(models::kd_loss_name(kd)) {
      auto cfg = dual_config(kAll);
      cfg.kd = kd;
      cfg.kd_weight = 0.7f;
      cfg.temperature = 2.0f;
      cfg.hint_weight = 0.3f;
      cfg.student_embedding_scale = 0.6f;
      cfg.student_embedding_losses = models::StudentEmbeddingLosses::Label;
      const Grads label = dual_grads(cfg);
      // The tables get what they get without any distillation term...
      auto no_distill = cfg;
      no_distill.kd_weight = 0;
      no_distill.hint_weight = 0;
      require_close(label.tables, dual_grads(no_distill).tables, 1e-12, "tables: label term only");
      // ...and every dense parameter what it gets under copy-and-freeze.
      auto frozen = cfg;
      frozen.student_embedding_scale = 0;
      require_close(label.dense, dual_grads(frozen).dense, 1e-12, "dense: all terms");
      CHECK(label.loss == dual_grads(frozen).loss);

      // All: every student term reaches the tables, scaled: g(s) = g(0) + s·(g(1) − g(0)).
      auto all = cfg;
      all.student_embedding_losses = models::StudentEmbeddingLosses::All;
      const Grads g06 = dual_grads(all);
      all.student_embedding_scale = 1;
      const Grads g1 = dual_grads(all);
      const Grads g0 = dual_grads(frozen);
      std::vector<double> expect(g0.tables.size());
      for (size_t i = 0; i < expect.size(); ++i)
        expect[i] = g0.tables[i] + double(0.6f) * (g1.tables[i] - g0.tables[i]);
      require_close(g06.tables, expect, 1e-12, "tables: all terms, scale 0.6");
      CHECK(g1.tables != label.tables);  // the distillation terms do reach them under All
    }
  }
}

TEST_CASE("Dual DNN: the KD weight ramps up over kd_warmup_steps", "[dual]") {
  for (auto kd : {models::KdLoss::Mse, models::KdLoss::Bce}) {
    DYNAMIC_SECTION(models::kd_loss_name(kd)) {
      auto warm = dual_config({"din", "cross"});
      warm.kd = kd;
      warm.temperature = 2.0f;
      warm.kd_weight = 1.0f;
      warm.kd_warmup_steps = 4;
      auto plain = warm;
      plain.kd_warmup_steps = 0;
      // Step k (0-based) distils with kd_weight·(k+1)/4: steps 0 and 2 with a quarter and three
      // quarters of the weight, from step 3 on with all of it.
      for (auto [k, weight] : {std::pair<int64_t, float>{0, 0.25f}, {2, 0.75f}, {3, 1.0f}, {9, 1.0f}}) {
        INFO("step " << k);
        plain.kd_weight = weight;
        const Grads w = dual_grads(warm, k), p = dual_grads(plain, k);
        require_close(w.dense, p.dense, 1e-12, "dense gradients");
        require_close(w.tables, p.tables, 1e-12, "table gradients");
        CHECK(std::abs(w.loss - p.loss) <= 1e-12 * std::abs(p.loss));
      }
      plain.kd_weight = 1.0f;
      CHECK(dual_grads(warm, 0).dense != dual_grads(plain, 0).dense);
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
  using models::StudentEmbeddingLosses;
  for (float scale : {0.0f, 0.3f, 1.0f}) {
    for (auto losses : {StudentEmbeddingLosses::Label, StudentEmbeddingLosses::All}) {
      DYNAMIC_SECTION("student_embedding_scale=" << scale << " losses="
                                                 << models::student_embedding_losses_name(losses)) {
        auto cfg = dual_config(kAll);
        cfg.teacher_weight = 0;  // steps driven only by student losses (BCE, KD, hint)
        cfg.kd_warmup_steps = 2;
        cfg.student_embedding_scale = scale;
        cfg.student_embedding_losses = losses;
        models::DualDnn<float> model(cfg, kColumns, 3, ctx);
        const Split before = split_state(ctx, model);
        train::LocalTrainer<float> trainer(model, ctx);
        for (int i = 0; i < 3; ++i) trainer.step(test::fixture_batch(100 * i, 32, 4));
        const Split after = split_state(ctx, model);
        test::require_bitwise_equal(after.teacher, before.teacher, "teacher parameters");
        CHECK(after.student != before.student);
        if (scale > 0)
          CHECK(after.tables != before.tables);
        else
          test::require_bitwise_equal(after.tables, before.tables, "embeddings (copy-and-freeze)");
      }
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

TEST_CASE("Dual DNN: student residual tables: gradients, the teacher untouched, export and "
          "student-only",
          "[dual][residual]") {
  Context ctx;
  SECTION("gradients: the residual tables and the student get the derivative of the loss") {
    // The teacher does not read the residual tables, so even with KD and hint (targets from the
    // teacher) their gradient is the derivative of the total loss, like the student's.
    auto cfg = dual_config(kAll);
    cfg.student_residual = true;
    cfg.kd_weight = 0.7f;
    cfg.hint_weight = 0.3f;
    for (float scale : {0.0f, 0.5f}) {
      INFO("student_embedding_scale " << scale);
      cfg.student_embedding_scale = scale;
      models::DualDnn<double> model(cfg, kColumns, 3, ctx);
      embedding::DeviceBatch<double> staged;
      model.stage(ctx, test::fixture_batch(7, 5, 4), staged);
      double loss_sum = 0;
      const auto loss = [&] {
        model.forward(ctx, staged, true);
        model.loss_and_backward(ctx, staged, &loss_sum);
        return loss_sum;
      };
      model.zero_grad(ctx);
      loss();
      auto& ps = model.dense_params();
      const std::vector<double> analytic(ps.grads(), ps.grads() + ps.size());
      int residual_tables = 0;
      for (auto* t : model.tables()) {
        if (t->config().residual_of.empty()) continue;
        ++residual_tables;
        const auto g = test::dense_table_grad(*t);
        test::check_gradient(t->config().name, loss, t->weights(), g.data(), t->rows() * t->dim(),
                             {}, 1e-6, 5e-6, 1e-3);
      }
      CHECK(residual_tables == 2);  // user@student, item@student
      test::check_gradient("student parameters", loss, ps.values(), analytic.data(), ps.size(),
                           trainable_range(ps, model.student_begin(), ps.trainable_size()), 1e-6,
                           5e-6, 1e-3);
    }
  }
  SECTION("the teacher and the shared tables train bitwise as under copy-and-freeze") {
    auto plain = dual_config(kAll);
    plain.kd_warmup_steps = 2;
    auto with = plain;
    with.student_residual = true;
    models::DualDnn<float> a(plain, kColumns, 3, ctx), b(with, kColumns, 3, ctx);
    train::LocalTrainer<float> ta(a, ctx), tb(b, ctx);
    for (int i = 0; i < 4; ++i) {
      ta.step(test::fixture_batch(100 * i, 32, 4));
      tb.step(test::fixture_batch(100 * i, 32, 4));
    }
    const Split sa = split_state(ctx, a);
    auto& pb = b.dense_params();
    const auto vb = to_host(ctx, pb.values(), pb.size());
    test::require_bitwise_equal(std::vector<float>(vb.begin(), vb.begin() + b.student_begin()),
                                sa.teacher, "teacher parameters");
    std::vector<float> shared_b, residual_b;
    for (auto* t : b.tables())
      for (const auto& [name, v] : t->to_host(ctx))
        (t->config().residual_of.empty() ? shared_b : residual_b).insert(
            (t->config().residual_of.empty() ? shared_b : residual_b).end(), v.begin(), v.end());
    test::require_bitwise_equal(shared_b, sa.tables, "shared tables and their optimizer state");
    CHECK(std::any_of(residual_b.begin(), residual_b.end(), [](float x) { return x != 0.0f; }));
    CHECK(std::vector<float>(vb.begin() + b.student_begin(), vb.begin() + pb.trainable_size()) !=
          sa.student);
  }
  SECTION("the exported student carries shared + residual and predicts like in training") {
    auto cfg = dual_config(kAll);
    cfg.student_residual = true;
    test::TempDir dir;
    models::DualDnn<float> model(cfg, kColumns, 3, ctx);
    train::LocalTrainer<float> trainer(model, ctx);
    for (int i = 0; i < 4; ++i) trainer.step(test::fixture_batch(50 * i, 32, 4));
    model.export_student(ctx, dir.file("student"), kColumns);
    serving::StudentModel student(dir.file("student"), ctx);
    const data::Batch batch = test::fixture_batch(5000, 64, 4);
    test::require_close(student.predict(batch), trainer.predict(batch), 1e-7, 1e-6,
                        "exported vs in-training student");
  }
  SECTION("student-only: the residual tables learn, the teacher and the shared tables do not") {
    auto cfg = dual_config(kAll);
    cfg.student_residual = true;
    cfg.mode = models::DualMode::StudentOnly;
    models::DualDnn<float> model(cfg, kColumns, 3, ctx);
    const auto shared_and_residual = [&] {
      std::pair<std::vector<float>, std::vector<float>> out;
      for (auto* t : model.tables())
        for (const auto& [name, v] : t->to_host(ctx)) {
          auto& dst = t->config().residual_of.empty() ? out.first : out.second;
          dst.insert(dst.end(), v.begin(), v.end());
        }
      return out;
    };
    const Split before = split_state(ctx, model);
    const auto tables_before = shared_and_residual();
    train::LocalTrainer<float> trainer(model, ctx);
    for (int i = 0; i < 3; ++i) trainer.step(test::fixture_batch(100 * i, 32, 4));
    const Split after = split_state(ctx, model);
    const auto tables_after = shared_and_residual();
    test::require_bitwise_equal(after.teacher, before.teacher, "teacher parameters");
    test::require_bitwise_equal(tables_after.first, tables_before.first, "shared tables");
    CHECK(tables_after.second != tables_before.second);
    CHECK(after.student != before.student);
  }
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

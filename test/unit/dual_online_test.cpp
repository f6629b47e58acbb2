// The online loop of seed 002 (docs/dual_dnn.md, "The online loop"): a dual DNN trained
// offline, then warm-started in student-only mode on newer data whose click model has drifted.
// The student (its MLP and residual tables) adapts: its held-out AUC on the drifted data rises,
// while the teacher, the shared embeddings and their optimizer state stay bitwise what the
// offline run left.
#include <catch2/catch.hpp>

#include <memory>

#include "lockstep/comm/communicator.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/trainer.h"
#include "data_test_util.h"
#include "test_util.h"

using namespace lockstep;

namespace {
constexpr int64_t kOffline = 100000, kOnline = 60000, kTest = 20000, kBatch = 512;

using Gen = std::shared_ptr<const data::SyntheticGenerator>;

models::DualConfig online_dual_config(const data::Schema& schema) {
  models::DualConfig c;
  for (int64_t col : schema.sparse_columns()) {
    const std::string name = schema.columns()[col].name;
    const std::string table = name == "hist_items" ? "item" : name == "hist_cats" ? "item_cat" : name;
    if (table == name) c.tables.push_back({name, 1 << 16, 8});
    c.fields.push_back({name, table});
  }
  c.components = {"cross"};
  c.teacher_mlp = {{128, 64, 1}, {nn::ActivationKind::PReLU}, false};
  c.student_mlp = {{64, 32, 1}, {nn::ActivationKind::PReLU}, false};
  return c;
}

std::vector<std::string> columns_of(const data::Schema& schema) {
  std::vector<std::string> out;
  for (int64_t c : schema.sparse_columns()) out.push_back(schema.columns()[c].name);
  return out;
}

double fit(models::Model<float>& model, Context& ctx, const Gen& gen, int64_t first,
           int64_t count) {
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource data(gen, first, count, kBatch, 0, 1);
  return trainer.fit(data, nullptr).last_eval.auc;
}

double auc_on(models::Model<float>& model, Context& ctx, const Gen& gen, int64_t first) {
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource data(gen, first, kTest, kBatch, 0, 1);
  return trainer.evaluate(data).auc;
}

struct State {
  std::vector<float> teacher, student, frozen_rest, tables, residual_tables, teacher_optimizer;
};
State state_of(const Context& ctx, models::DualDnn<float>& m) {
  State s;
  auto& ps = m.dense_params();
  const auto v = to_host(ctx, ps.values(), ps.size());
  s.teacher.assign(v.begin(), v.begin() + m.student_begin());
  s.student.assign(v.begin() + m.student_begin(), v.begin() + ps.trainable_size());
  s.frozen_rest.assign(v.begin() + ps.trainable_size(), v.end());
  for (auto* t : m.tables()) {  // shared, and the student's residual tables
    auto& dst = t->config().residual_of.empty() ? s.tables : s.residual_tables;
    for (const auto& [name, values] : t->to_host(ctx))  // weights and optimizer state
      dst.insert(dst.end(), values.begin(), values.end());
  }
  for (auto& [name, t] : m.dense_optimizer().state()) {
    const auto o = to_host(ctx, *t);
    s.teacher_optimizer.insert(s.teacher_optimizer.end(), o.begin(), o.begin() + m.student_begin());
  }
  return s;
}
}  // namespace

TEST_CASE("The online loop: student-only training on drifted data adapts the student and "
          "leaves the teacher and the embeddings bitwise unchanged",
          "[dual][student_only][auc]") {
  Context ctx;
  test::TempDir dir;
  auto config = data::SyntheticConfig::demo();
  const Gen before = std::make_shared<const data::SyntheticGenerator>(config);
  // The drift: the same world (users, items, histories), a different click model (the dense
  // features count five times as much).
  config.w_dense = 2.5;
  const Gen after = std::make_shared<const data::SyntheticGenerator>(config);
  const auto& schema = before->schema();
  const auto cfg = online_dual_config(schema);

  // Offline: joint training on the old data, then a checkpoint.
  models::DualDnn<float> offline(cfg, columns_of(schema), schema.num_dense(), ctx);
  fit(offline, ctx, before, 0, kOffline);
  train::CheckpointMeta meta;
  meta.model = "dual";
  const std::string ckpt = train::write_checkpoint(dir.file("ckpt"), meta, offline, ctx);

  // Online: warm start in student-only mode, on the drifted data that follows.
  auto online_cfg = cfg;
  online_cfg.mode = models::DualMode::StudentOnly;
  models::DualDnn<float> online(online_cfg, columns_of(schema), schema.num_dense(), ctx);
  train::read_checkpoint(ckpt, online, ctx, 0);
  const State start = state_of(ctx, online);
  const int64_t test_first = kOffline + kOnline;
  const double student_before = auc_on(online, ctx, after, test_first);
  fit(online, ctx, after, kOffline, kOnline);
  const double student_after = auc_on(online, ctx, after, test_first);
  const State end = state_of(ctx, online);

  WARN("student AUC on the drifted data: " << student_before << " before, " << student_after
                                           << " after " << kOnline << " student-only samples");
  // Measured: 0.805 before, 0.845 after (KD weight 1 towards the stale teacher; 0.868 with 0.3).
  CHECK(student_after > student_before + 0.02);
  CHECK(end.student != start.student);
  CHECK(end.residual_tables != start.residual_tables);  // the student's own tables learn too
  test::require_bitwise_equal(end.teacher, start.teacher, "teacher parameters");
  test::require_bitwise_equal(end.frozen_rest, start.frozen_rest, "non-trainable state");
  test::require_bitwise_equal(end.tables, start.tables,
                              "shared embeddings and their optimizer state");
  test::require_bitwise_equal(end.teacher_optimizer, start.teacher_optimizer,
                              "the teacher's optimizer state");
}

// On generated data with feature interactions (the demo preset: pairwise context interactions
// and the target-history match), the student co-trained with a teacher that models them (a
// cross network) ends closer to the teacher's AUC than the same student trained alone: the dual
// DNN's point (seed 002). Several epochs over a small set, where a student alone overfits its
// embeddings; co-trained, it reads the teacher's embeddings (copy-and-freeze) and its soft
// targets (KD, hint).
#include <catch2/catch.hpp>

#include <memory>

#include "lockstep/comm/communicator.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"
#include "lockstep/train/metrics.h"
#include "lockstep/train/trainer.h"

using namespace lockstep;

namespace {
constexpr int64_t kTrain = 150000, kTest = 30000, kBatch = 1024, kEpochs = 3;

train::EvalResult fit(models::Model<float>& model, Context& ctx,
                      std::shared_ptr<const data::SyntheticGenerator> gen,
                      int64_t train = kTrain, int64_t epochs = kEpochs) {
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  tc.epochs = epochs;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource train_data(gen, 0, train, kBatch, 0, 1);
  train::SyntheticBatchSource test_data(gen, train, kTest, kBatch, 0, 1);
  return trainer.fit(train_data, &test_data).last_eval;
}

/// The teacher's AUC is reported beside the student's by every evaluation.
double teacher_auc(const train::EvalResult& r) {
  for (size_t i = 0; i < r.output_names.size(); ++i)
    if (r.output_names[i] == "teacher") return r.outputs[i].auc;
  FAIL("no teacher output");
  return 0;
}
}  // namespace

TEST_CASE("The co-trained student ends closer to the teacher than a student trained alone",
          "[dual][auc]") {
  Context ctx;
  auto gen = std::make_shared<const data::SyntheticGenerator>(data::SyntheticConfig::demo());
  std::vector<std::string> columns;
  for (int64_t c : gen->schema().sparse_columns()) columns.push_back(gen->schema().columns()[c].name);

  // The same tables and pooled fields for both; the student MLP 128-64-1 for both.
  models::EmbeddingMlpConfig alone;
  for (const auto& name : columns) {
    const std::string table = name == "hist_items" ? "item" : name == "hist_cats" ? "item_cat" : name;
    if (table == name) alone.tables.push_back({name, 1 << 17, 16});
    alone.fields.push_back({name, table});
  }
  alone.mlp = {{128, 64, 1}, {nn::ActivationKind::PReLU}, false};
  models::DualConfig dual;
  dual.tables = alone.tables;
  dual.fields = alone.fields;
  dual.components = {"cross"};
  // Seed 002's recipe, as measured below: copy-and-freeze, KD weight 1 from the first step, hint.
  dual.student_residual = false;
  dual.kd_weight = 1.0f;
  dual.kd_warmup_steps = 0;
  dual.hint_weight = 0.1f;

  models::EmbeddingMlp<float> student_alone(alone, columns, gen->schema().num_dense(), ctx);
  const double alone_auc = fit(student_alone, ctx, gen).auc;
  models::DualDnn<float> co(dual, columns, gen->schema().num_dense(), ctx);
  const train::EvalResult co_eval = fit(co, ctx, gen);
  const double co_auc = co_eval.auc, t_auc = teacher_auc(co_eval);
  std::vector<float> prob;
  const data::Batch test = gen->generate(kTrain, kTest, &prob);
  const double oracle = train::roc_auc(prob, test.labels);

  WARN("held-out AUC after " << kEpochs << " epochs of " << kTrain << " samples: teacher " << t_auc
                               << ", co-trained student " << co_auc << ", student alone "
                               << alone_auc << ", oracle " << oracle);
  // The student-teacher gap (teacher − student, signed: a co-trained student may even pass an
  // overfitting teacher) is smaller co-trained. Measured with data seeds 1..4 (150k samples,
  // 3 epochs): co-trained − alone between +0.009 and +0.022 (seed 1, used here: teacher 0.666,
  // co-trained 0.684, alone 0.662). With one epoch over 200k samples the two students are
  // within ±0.004 of each other: the gain is regularisation, not extra capacity.
  const double gap_co = t_auc - co_auc, gap_alone = t_auc - alone_auc;
  CHECK(gap_co < gap_alone - 0.005);
  CHECK(co_auc < oracle);
}

TEST_CASE("One pass over fresh data: the default co-trained student beats the same student alone",
          "[dual][auc]") {
  // The built-in models of lockstep-train (DualConfig defaults: DIN + cross teacher; the student
  // MLP 128-64-1) on the demo preset, one pass, one rank; the student alone is the same MLP over
  // the same tables.
  constexpr int64_t kOnePass = 100000;
  Context ctx;
  auto gen = std::make_shared<const data::SyntheticGenerator>(data::SyntheticConfig::demo());
  const auto& schema = gen->schema();
  std::vector<std::string> columns;
  for (int64_t c : schema.sparse_columns()) columns.push_back(schema.columns()[c].name);
  const models::DualConfig dual = models::preset_dual_config(schema, 1 << 17);
  auto alone = models::preset_embedding_mlp_config(schema, 1 << 17);
  alone.mlp = dual.student_mlp;

  models::EmbeddingMlp<float> student_alone(alone, columns, schema.num_dense(), ctx);
  const double alone_auc = fit(student_alone, ctx, gen, kOnePass, 1).auc;
  models::DualDnn<float> co(dual, columns, schema.num_dense(), ctx);
  const train::EvalResult co_eval = fit(co, ctx, gen, kOnePass, 1);
  WARN("one pass over " << kOnePass << " samples: teacher " << teacher_auc(co_eval)
                        << ", co-trained student " << co_eval.auc << ", student alone "
                        << alone_auc);
  // Measured: teacher 0.6976, co-trained 0.6734, alone 0.6674 (+0.0059; seed 002's recipe,
  // copy-and-freeze with KD 1 and hint 0.1, gave 0.6571). docs/dual_dnn.md has the ablation.
  CHECK(co_eval.auc > alone_auc + 0.004);
}

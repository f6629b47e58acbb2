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
#include "lockstep/train/metrics.h"
#include "lockstep/train/trainer.h"

using namespace lockstep;

namespace {
constexpr int64_t kTrain = 150000, kTest = 30000, kBatch = 1024, kEpochs = 3;

train::EvalResult fit(models::Model<float>& model, Context& ctx,
                      std::shared_ptr<const data::SyntheticGenerator> gen) {
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  tc.epochs = kEpochs;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource train_data(gen, 0, kTrain, kBatch, 0, 1);
  train::SyntheticBatchSource test_data(gen, kTrain, kTest, kBatch, 0, 1);
  return trainer.fit(train_data, &test_data).last_eval;
}

double teacher_auc(models::DualDnn<float>& model, Context& ctx,
                   std::shared_ptr<const data::SyntheticGenerator> gen) {
  model.set_output(models::DualDnn<float>::Output::Teacher);
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource test_data(gen, kTrain, kTest, kBatch, 0, 1);
  const double auc = trainer.evaluate(test_data).auc;
  model.set_output(models::DualDnn<float>::Output::Student);
  return auc;
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

  models::EmbeddingMlp<float> student_alone(alone, columns, gen->schema().num_dense(), ctx);
  const double alone_auc = fit(student_alone, ctx, gen).auc;
  models::DualDnn<float> co(dual, columns, gen->schema().num_dense(), ctx);
  const double co_auc = fit(co, ctx, gen).auc;
  const double t_auc = teacher_auc(co, ctx, gen);
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

// On generated data whose clicks depend on how well the target matches the behaviour history,
// DIN's target attention must beat a model that sum-pools the history, both trained the same way
// on the same samples and reported next to the oracle (Bayes) AUC of the generator.
#include <catch2/catch.hpp>

#include <memory>

#include "lockstep/comm/communicator.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/din.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/train/metrics.h"
#include "lockstep/train/trainer.h"

using namespace lockstep;

namespace {
constexpr int64_t kTrain = 200000, kTest = 30000, kBatch = 1024;

/// Tables and fields of the synthetic schema; history columns gathered as sequences when
/// max_len > 0, else pooled with `pooling`.
void fields_for(const data::Schema& schema, int64_t max_len, embedding::Pooling pooling,
                std::vector<embedding::TableConfig>& tables,
                std::vector<embedding::FieldConfig>& fields, std::vector<std::string>& columns) {
  for (int64_t c : schema.sparse_columns()) columns.push_back(schema.columns()[c].name);
  for (const auto& name : columns) {
    const bool hist = name.rfind("hist_", 0) == 0;
    const std::string table = name == "hist_items" ? "item" : name == "hist_cats" ? "item_cat" : name;
    if (!hist) tables.push_back({name, 1 << 17, 16, pooling, 0.05f});
    fields.push_back({name, table, hist ? max_len : 0});
  }
}

double held_out_auc(models::Model<float>& model, Context& ctx,
                    std::shared_ptr<const data::SyntheticGenerator> gen) {
  auto comm = comm::create_communicator("local", ctx.device());
  train::TrainerConfig tc;
  tc.log_every = 0;
  train::Trainer trainer(model, *comm, ctx, tc);
  train::SyntheticBatchSource train_data(gen, 0, kTrain, kBatch, 0, 1);
  train::SyntheticBatchSource test_data(gen, kTrain, kTest, kBatch, 0, 1);
  return trainer.fit(train_data, &test_data).last_eval.auc;
}
}  // namespace

TEST_CASE("DIN beats sum pooling of the history on target-history-match data", "[din][auc]") {
  Context ctx;
  auto gen = std::make_shared<const data::SyntheticGenerator>(data::SyntheticConfig::demo());
  std::vector<float> prob;
  const data::Batch test = gen->generate(kTrain, kTest, &prob);
  const double oracle = train::roc_auc(prob, test.labels);

  models::EmbeddingMlpConfig sum_cfg;
  std::vector<std::string> columns;
  fields_for(gen->schema(), 0, embedding::Pooling::Sum, sum_cfg.tables, sum_cfg.fields, columns);
  models::EmbeddingMlp<float> sum_model(sum_cfg, columns, gen->schema().num_dense(), ctx);
  const double sum_auc = held_out_auc(sum_model, ctx, gen);

  models::DinConfig din_cfg;
  columns.clear();
  fields_for(gen->schema(), data::SyntheticConfig::demo().max_history, embedding::Pooling::Mean,
             din_cfg.tables, din_cfg.fields, columns);
  models::Din<float> din(din_cfg, columns, gen->schema().num_dense(), ctx);
  const double din_auc = held_out_auc(din, ctx, gen);

  WARN("held-out AUC on " << kTrain << " training samples: DIN " << din_auc << ", sum pooling "
                          << sum_auc << ", oracle " << oracle);
  // Measured with seeds 1 and 2: DIN 0.722 / 0.721, sum pooling 0.693 / 0.684 (oracle 0.802).
  CHECK(din_auc > sum_auc + 0.015);
  CHECK(din_auc < oracle);
  CHECK(sum_auc > 0.6);
}

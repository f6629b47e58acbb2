// A user's driver built against an installed lockstep: generates data, builds the embedding +
// MLP model through the public API, trains a few steps and checks that the loss falls.
#include <lockstep/config.h>
#include <lockstep/core/device.h>
#include <lockstep/data/synthetic.h>
#include <lockstep/models/embedding_mlp.h>
#include <lockstep/train/local_trainer.h>
#include <lockstep/train/metrics.h>

#include <cstdio>

int main() {
  using namespace lockstep;
  Context ctx(select_device("auto"));
  data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  std::vector<std::string> columns;
  for (int64_t c : gen.schema().sparse_columns()) columns.push_back(gen.schema().columns()[c].name);
  models::EmbeddingMlpConfig config;
  for (const auto& name : columns) {
    config.tables.push_back({name, 4096, 8});
    config.fields.push_back({name, name});
  }
  config.mlp.widths = {32, 1};
  models::EmbeddingMlp<float> model(config, columns, gen.schema().num_dense(), ctx);
  train::LocalTrainer<float> trainer(model, ctx);
  const data::Batch batch = gen.generate(0, 256);
  const double first = trainer.step(batch);
  double last = first;
  for (int i = 0; i < 30; ++i) last = trainer.step(batch);
  const double auc = train::roc_auc(trainer.predict(batch), batch.labels);
  std::printf("lockstep %s consumer on %s: loss %.2f -> %.2f, train AUC %.3f\n",
              LOCKSTEP_VERSION_STRING, ctx.device().str().c_str(), first, last, auc);
  return last < first && auc > 0.6 ? 0 : 1;
}

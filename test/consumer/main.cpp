// A user's driver built against an installed lockstep (through CMake or pkg-config): checks the
// loaded library's version against the headers', opens the installed CSV sample with
// train::open_dataset (no glue), trains the built-in embedding + MLP model on it through the
// public API and checks the held-out AUC.
//
//   consumer <prefix>/share/lockstep/data
#include <lockstep/config.h>
#include <lockstep/core/device.h>
#include <lockstep/core/error.h>
#include <lockstep/data/schema.h>
#include <lockstep/models/factory.h>
#include <lockstep/train/dataset.h>
#include <lockstep/train/local_trainer.h>
#include <lockstep/train/metrics.h>
#include <lockstep/version.h>

#include <cstdio>
#include <cstring>
#include <set>

int main(int argc, char** argv) {
  using namespace lockstep;
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer <directory of ads-*.csv and ads.schema.toml>\n");
    return 2;
  }
  // Headers and library of one release (the run path found the installed liblockstep).
  if (std::strcmp(version(), LOCKSTEP_VERSION_STRING) != 0 || !version_compatible()) {
    std::fprintf(stderr, "headers %s, library %s\n", LOCKSTEP_VERSION_STRING, version());
    return 1;
  }
  const std::string dir = argv[1];
  try {
    Context ctx(select_device("auto"));
    const auto schema = data::Schema::load(dir + "/ads.schema.toml");
    train::DatasetOptions options;
    options.source.batch_size = 64;
    train::Dataset train_set = train::open_dataset({dir + "/ads-train.csv"}, &schema, options,
                                                   "training data");
    options.source.batch_size = 1000;
    train::Dataset test_set = train::open_dataset({dir + "/ads-test.csv"}, &schema, options,
                                                  "test data");
    auto model = models::make_preset_model<float>("embedding_mlp", train_set.schema, 4096, ctx);
    train::LocalTrainer<float> trainer(*model, ctx);
    std::set<uint64_t> ids;
    int64_t samples = 0;
    for (int epoch = 0; epoch < 2; ++epoch) {
      train_set.source->start_epoch(epoch);
      data::Batch batch;
      while (train_set.source->next(batch)) {
        trainer.step(batch);
        samples += batch.size;
        ids.insert(batch.sample_ids.begin(), batch.sample_ids.end());
      }
    }
    std::vector<float> prob;
    std::vector<float> labels;
    test_set.source->start_epoch(0);
    data::Batch batch;
    while (test_set.source->next(batch)) {
      const auto p = trainer.predict(batch);
      prob.insert(prob.end(), p.begin(), p.end());
      labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
    }
    const double auc = train::roc_auc(prob, labels);
    std::printf("lockstep %s (headers %s) consumer on %s: %lld samples of %zu file(s), %llu bytes, "
                "%zu distinct sample ids; test AUC %.3f over %zu records\n",
                version(), LOCKSTEP_VERSION_STRING, ctx.device().str().c_str(),
                static_cast<long long>(samples), train_set.files.size(),
                static_cast<unsigned long long>(train_set.bytes), ids.size(), auc, prob.size());
    return samples == 10000 && ids.size() == 5000 && prob.size() == 1000 && auc > 0.6 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}

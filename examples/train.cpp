// lockstep-train: single-process trainer of the embedding + MLP model on generated or TSV data.
// Prints held-out AUC next to the oracle (Bayes) AUC of the generator, and samples/s.
//
//   lockstep-train                                   # demo preset, generated in memory
//   lockstep-train --synthetic din-bench --train-samples 2000000 --device cuda
//   lockstep-train --data out/demo --config examples/configs/demo.toml
//
// See docs/training.md for every flag.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "lockstep/core/device.h"
#include "lockstep/core/logging.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/metrics.h"

using namespace lockstep;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string config, data_dir, synthetic = "demo", device = "auto", save, metrics,
                                log_level = "info";
  int64_t train_samples = 1000000, test_samples = 50000, batch_size = 1024, table_rows = 1 << 17;
  int64_t epochs = 1;
  uint64_t data_seed = 1;
  int threads = 0;
  bool allow_tf32 = false;
};

/// Where batches come from: the generator (in memory) or a lockstep-datagen directory.
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual const data::Schema& schema() const = 0;
  /// Calls fn(batch) for every training batch of one epoch.
  virtual void for_each_train_batch(int64_t batch_size,
                                    const std::function<void(const data::Batch&)>& fn) = 0;
  /// The held-out set and its oracle AUC (NaN when unknown).
  virtual const data::Batch& test_set() const = 0;
  virtual double oracle_auc() const = 0;
  virtual std::string describe() const = 0;
};

class SyntheticSource final : public DataSource {
 public:
  SyntheticSource(const std::string& preset, uint64_t seed, int64_t train, int64_t test)
      : generator_([&] {
          auto c = data::SyntheticConfig::preset(preset);
          c.seed = seed;
          return c;
        }()),
        preset_(preset),
        train_(train) {
    std::vector<float> prob;
    // The held-out samples follow the training samples: disjoint by construction.
    test_ = generator_.generate(train, test, &prob);
    oracle_ = train::roc_auc(prob, test_.labels);
  }
  const data::Schema& schema() const override { return generator_.schema(); }
  void for_each_train_batch(int64_t batch_size,
                            const std::function<void(const data::Batch&)>& fn) override {
    for (int64_t first = 0; first < train_; first += batch_size)
      fn(generator_.generate(first, std::min(batch_size, train_ - first)));
  }
  const data::Batch& test_set() const override { return test_; }
  double oracle_auc() const override { return oracle_; }
  std::string describe() const override {
    return fmt::format("synthetic '{}' (seed {}): {} train, {} held-out samples", preset_,
                       generator_.config().seed, train_, test_.size);
  }

 private:
  data::SyntheticGenerator generator_;
  std::string preset_;
  int64_t train_;
  data::Batch test_;
  double oracle_ = NAN;
};

/// A directory written by lockstep-datagen: schema.toml, the training files listed in meta.json
/// (train.tsv when there is no meta.json), test.tsv, and the oracle AUC from meta.json.
class DirectorySource final : public DataSource {
 public:
  explicit DirectorySource(const std::string& dir) : dir_(dir) {
    schema_ = data::Schema::load(dir + "/schema.toml");
    test_ = data::read_text(dir + "/test.tsv", schema_);
    train_files_ = {dir + "/train.tsv"};
    const std::string meta = dir + "/meta.json";
    if (!std::filesystem::exists(meta)) return;
    try {
      const auto j = nlohmann::json::parse(std::ifstream(meta));
      const auto& splits = j.at("splits");
      if (splits.at("test").contains("oracle_auc"))
        oracle_ = splits.at("test").at("oracle_auc").get<double>();
      train_files_.clear();
      for (const auto& f : splits.at("train").at("files"))
        train_files_.push_back(dir + "/" + f.at("path").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{}: not a lockstep-datagen meta.json: {}", meta, e.what()));
    }
  }
  const data::Schema& schema() const override { return schema_; }
  void for_each_train_batch(int64_t batch_size,
                            const std::function<void(const data::Batch&)>& fn) override {
    data::Batch batch;
    for (const auto& file : train_files_) {
      data::TextReader reader(file, schema_);
      while (reader.next(batch, batch_size)) fn(batch);
    }
  }
  const data::Batch& test_set() const override { return test_; }
  double oracle_auc() const override { return oracle_; }
  std::string describe() const override {
    return fmt::format("{}: {} training file(s), {} held-out samples", dir_, train_files_.size(),
                       test_.size);
  }

 private:
  std::string dir_;
  data::Schema schema_;
  std::vector<std::string> train_files_;
  data::Batch test_;
  double oracle_ = NAN;
};

std::vector<std::string> sparse_column_names(const data::Schema& schema) {
  std::vector<std::string> names;
  for (int64_t c : schema.sparse_columns()) names.push_back(schema.columns()[c].name);
  return names;
}

/// The built-in model when no --config is given: one table per sparse column, except that a
/// history column shares the table of the matching target column (hist_items -> item,
/// hist_cats -> item_cat), so history and target embeddings live in one space.
models::EmbeddingMlpConfig default_config(const data::Schema& schema, int64_t table_rows) {
  models::EmbeddingMlpConfig c;
  const auto names = sparse_column_names(schema);
  const auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  for (const auto& name : names) {
    std::string table = name;
    if (name == "hist_items" && has("item")) table = "item";
    if (name == "hist_cats" && has("item_cat")) table = "item_cat";
    if (table == name) c.tables.push_back({name, table_rows, 16, embedding::Pooling::Mean, 0.05f});
    c.fields.push_back({name, table});
  }
  return c;  // MLP and optimizers: the EmbeddingMlpConfig defaults
}

struct EvalResult {
  double auc, logloss;
};

EvalResult evaluate(train::LocalTrainer<float>& trainer, const data::Batch& test,
                    int64_t batch_size) {
  std::vector<float> probs;
  probs.reserve(test.size);
  // Predict in slices so that activations stay batch-sized.
  for (int64_t first = 0; first < test.size; first += batch_size) {
    const int64_t n = std::min(batch_size, test.size - first);
    data::Batch slice;
    slice.size = n;
    for (const auto& col : test.sparse) {
      data::SparseColumn s;
      const int64_t base = col.offsets[first];
      for (int64_t b = 1; b <= n; ++b) s.offsets.push_back(col.offsets[first + b] - base);
      s.keys.assign(col.keys.begin() + base, col.keys.begin() + col.offsets[first + n]);
      slice.sparse.push_back(std::move(s));
    }
    const int64_t nd = test.num_dense();
    slice.dense.assign(test.dense.begin() + first * nd, test.dense.begin() + (first + n) * nd);
    slice.labels.assign(test.labels.begin() + first, test.labels.begin() + first + n);
    const auto p = trainer.predict(slice);
    probs.insert(probs.end(), p.begin(), p.end());
  }
  return {train::roc_auc(probs, test.labels), train::mean_log_loss_from_probs(probs, test.labels)};
}

int run(const Options& o) {
  set_log_level(o.log_level);
  const Device device = select_device(o.device);
  Context ctx(device, ContextOptions{o.allow_tf32, o.threads});
  std::unique_ptr<DataSource> source;
  if (!o.data_dir.empty())
    source = std::make_unique<DirectorySource>(o.data_dir);
  else
    source = std::make_unique<SyntheticSource>(o.synthetic, o.data_seed, o.train_samples,
                                               o.test_samples);
  const auto config = o.config.empty() ? default_config(source->schema(), o.table_rows)
                                       : models::load_embedding_mlp_config(o.config);
  models::EmbeddingMlp<float> model(config, sparse_column_names(source->schema()),
                                    source->schema().num_dense(), ctx);
  train::LocalTrainer<float> trainer(model, ctx);
  log().info("data: {}", source->describe());
  log().info("model: {} tables, {} fields, MLP input {} -> {}, {} dense parameters, device {}",
             config.tables.size(), config.fields.size(), model.input_width(),
             fmt::join(config.mlp.widths, "-"), model.dense_params().trainable_size(),
             device.str());

  std::ofstream metrics;
  if (!o.metrics.empty()) metrics.open(o.metrics);
  EvalResult last{NAN, NAN};
  double total_step_s = 0, total_wall_s = 0;
  int64_t total_samples = 0;
  for (int64_t epoch = 1; epoch <= o.epochs; ++epoch) {
    double loss_sum = 0, step_s = 0;
    int64_t samples = 0;
    const auto t0 = Clock::now();
    source->for_each_train_batch(o.batch_size, [&](const data::Batch& batch) {
      const auto s0 = Clock::now();
      loss_sum += trainer.step(batch);  // returns after the step's work is done (loss read back)
      step_s += std::chrono::duration<double>(Clock::now() - s0).count();
      samples += batch.size;
    });
    const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    last = evaluate(trainer, source->test_set(), o.batch_size);
    total_step_s += step_s;
    total_wall_s += wall_s;
    total_samples += samples;
    std::printf(
        "epoch %lld: train loss %.4f | held-out AUC %.4f (oracle %.4f) logloss %.4f | "
        "%.0f samples/s (model step), %.0f samples/s (end to end)\n",
        static_cast<long long>(epoch), loss_sum / std::max<int64_t>(samples, 1), last.auc,
        source->oracle_auc(), last.logloss, samples / step_s, samples / wall_s);
    std::fflush(stdout);
    if (metrics.is_open()) {
      metrics << nlohmann::json{{"epoch", epoch},
                                {"train_loss", loss_sum / std::max<int64_t>(samples, 1)},
                                {"test_auc", last.auc},
                                {"oracle_auc", source->oracle_auc()},
                                {"test_logloss", last.logloss},
                                {"samples_per_s_step", samples / step_s},
                                {"samples_per_s_end_to_end", samples / wall_s},
                                {"device", device.str()}}
                     .dump()
              << "\n";
    }
  }
  std::printf("result: AUC %.4f vs oracle AUC %.4f (gap %.4f); %.0f samples/s on %s, batch %lld\n",
              last.auc, source->oracle_auc(), source->oracle_auc() - last.auc,
              total_samples / total_step_s, device.str().c_str(),
              static_cast<long long>(o.batch_size));
  if (!o.save.empty()) {
    model.dense_params().save(ctx, o.save, {{"model", "embedding_mlp"}});
    log().info("saved dense parameters to {}", o.save);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep-train: single-process training of embedding + MLP on CTR data"};
  Options o;
  app.add_option("--config", o.config, "model TOML (docs/configuration.md); default: built in")
      ->check(CLI::ExistingFile);
  auto* data_opt = app.add_option("--data", o.data_dir, "directory written by lockstep-datagen")
                       ->check(CLI::ExistingDirectory);
  app.add_option("--synthetic", o.synthetic, "generate data in memory from a preset")
      ->check(CLI::IsMember({"demo", "din-bench"}))
      ->excludes(data_opt);
  app.add_option("--train-samples", o.train_samples, "synthetic training samples")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--test-samples", o.test_samples, "synthetic held-out samples")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 32));
  app.add_option("--data-seed", o.data_seed, "seed of the synthetic data");
  app.add_option("--batch-size", o.batch_size, "samples per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--epochs", o.epochs, "passes over the training data")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  app.add_option("--table-rows", o.table_rows, "hash buckets per table of the built-in model")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N");
  app.add_flag("--allow-tf32", o.allow_tf32, "allow TF32 tensor-core GEMMs on CUDA");
  app.add_option("--threads", o.threads, "CPU threads for OpenBLAS (0 = its default)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--save", o.save, "write the dense parameters (safetensors) here at the end");
  app.add_option("--metrics", o.metrics, "append one JSON line per epoch to this file");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
}

// lockstep-datagen: writes a synthetic CTR data set (schema, text records, metadata).
//
//   lockstep-datagen --out data/demo --train 200000 --test 20000 --seed 1 --preset demo
//
// writes data/demo/{schema.toml, train.tsv (or train-<k>-of-<K>.tsv with --shards K), test.tsv,
// meta.json}. Every file is written under a temporary name and renamed into place only after
// all of them are complete (meta.json last), so a failed or interrupted run never leaves a
// partial file under a final name; should a rename fail, the files this run already renamed are
// removed again. A directory with meta.json holds a complete data set. docs/data.md describes the
// formats and the generator.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "lockstep/config.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"
#include "lockstep/train/metrics.h"

namespace {

using lockstep::AtomicFileWriter;
using lockstep::data::SyntheticConfig;
using lockstep::data::SyntheticGenerator;
using nlohmann::json;

struct Options {
  std::string out;
  int64_t train = 0;
  int64_t test = 0;
  uint64_t seed = 1;
  std::string preset = "demo";
  int64_t shards = 1;
  int64_t chunk = 65536;
  std::string log_level = "info";
};

json config_json(const SyntheticConfig& c) {
  return {{"seed", c.seed},
          {"num_users", c.num_users},
          {"num_items", c.num_items},
          {"num_categories", c.num_categories},
          {"num_context_fields", c.num_context_fields},
          {"context_vocab", c.context_vocab},
          {"num_dense", c.num_dense},
          {"min_history", c.min_history},
          {"max_history", c.max_history},
          {"user_zipf", c.user_zipf},
          {"item_zipf", c.item_zipf},
          {"category_zipf", c.category_zipf},
          {"context_zipf", c.context_zipf},
          {"interests_per_user", c.interests_per_user},
          {"history_interest_prob", c.history_interest_prob},
          {"target_interest_prob", c.target_interest_prob},
          {"bias", c.bias},
          {"user_bias_std", c.user_bias_std},
          {"item_bias_std", c.item_bias_std},
          {"w_match", c.w_match},
          {"w_repeat", c.w_repeat},
          {"w_ctx", c.w_ctx},
          {"w_dense", c.w_dense}};
}

// One split (train or test): samples [first, first + count) spread over `files` contiguous,
// near-equal ranges.
struct SplitResult {
  json meta;
  double generate_seconds = 0;  // inside SyntheticGenerator::generate
  int64_t positives = 0;
  double ctr = 0, oracle_auc = 0;
};

SplitResult write_split(const SyntheticGenerator& gen, const Options& opt, const std::string& name,
                        int64_t first, int64_t count, int64_t files,
                        std::vector<AtomicFileWriter>& writers) {
  std::vector<float> all_probs, all_labels, probs;
  all_probs.reserve(static_cast<size_t>(count));
  all_labels.reserve(static_cast<size_t>(count));
  json file_list = json::array();
  std::string text;
  double generate_seconds = 0;
  for (int64_t k = 0; k < files; ++k) {
    const int64_t lo = first + count * k / files, hi = first + count * (k + 1) / files;
    const std::string file_name =
        files == 1 ? name + ".tsv" : fmt::format("{}-{:05d}-of-{:05d}.tsv", name, k, files);
    writers.emplace_back((std::filesystem::path(opt.out) / file_name).string());
    AtomicFileWriter& writer = writers.back();
    for (int64_t at = lo; at < hi; at += opt.chunk) {
      const int64_t n = std::min(opt.chunk, hi - at);
      const auto t0 = std::chrono::steady_clock::now();
      const auto batch = gen.generate(at, n, &probs);
      generate_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      text.clear();
      lockstep::data::append_text(text, gen.schema(), batch);
      writer.write(text);
      all_probs.insert(all_probs.end(), probs.begin(), probs.end());
      all_labels.insert(all_labels.end(), batch.labels.begin(), batch.labels.end());
    }
    writer.close();  // renamed at the end; no open descriptor per shard meanwhile
    file_list.push_back({{"path", file_name}, {"first_sample", lo}, {"count", hi - lo}});
  }
  SplitResult r;
  r.generate_seconds = generate_seconds;
  for (const float y : all_labels) r.positives += y > 0.5f;
  r.ctr = count > 0 ? static_cast<double>(r.positives) / static_cast<double>(count) : 0.0;
  r.oracle_auc = lockstep::train::roc_auc(all_probs, all_labels);
  const double oracle_logloss = lockstep::train::mean_log_loss_from_probs(all_probs, all_labels);
  r.meta = {{"first_sample", first},
            {"count", count},
            {"positives", r.positives},
            {"ctr", count > 0 ? json(r.ctr) : json(nullptr)},
            {"oracle_auc", std::isnan(r.oracle_auc) ? json(nullptr) : json(r.oracle_auc)},
            {"oracle_logloss", std::isnan(oracle_logloss) ? json(nullptr) : json(oracle_logloss)},
            {"files", file_list}};
  return r;
}

int run(const Options& opt) {
  lockstep::set_log_level(opt.log_level);
  SyntheticConfig config = SyntheticConfig::preset(opt.preset);
  config.seed = opt.seed;
  const auto start = std::chrono::steady_clock::now();
  const SyntheticGenerator gen(config);

  std::error_code ec;
  std::filesystem::create_directories(opt.out, ec);
  LOCKSTEP_CHECK(!ec, "--out '{}': cannot create the directory: {}", opt.out, ec.message());
  LOCKSTEP_CHECK(std::filesystem::is_directory(opt.out), "--out '{}' exists and is not a directory",
                 opt.out);

  // Every output stays under a temporary name until all are complete.
  std::vector<AtomicFileWriter> writers;
  writers.reserve(static_cast<size_t>(opt.shards + 3));
  writers.emplace_back((std::filesystem::path(opt.out) / "schema.toml").string());
  writers.back().write(gen.schema().to_toml());
  const SplitResult train = write_split(gen, opt, "train", 0, opt.train, opt.shards, writers);
  const SplitResult test = write_split(gen, opt, "test", opt.train, opt.test, 1, writers);

  const json meta = {{"generator", "lockstep-datagen"},
                     {"lockstep_version", LOCKSTEP_VERSION_STRING},
                     {"preset", opt.preset},
                     {"config", config_json(config)},
                     {"schema", "schema.toml"},
                     {"splits", {{"train", train.meta}, {"test", test.meta}}}};
  writers.emplace_back((std::filesystem::path(opt.out) / "meta.json").string());
  writers.back().write(meta.dump(2) + "\n");
  // Rename everything into place, meta.json last. Should a rename fail, remove what this run
  // already renamed, so the directory never holds a mix of this run's and no run's files.
  int64_t bytes = 0;
  size_t committed = 0;
  try {
    for (; committed < writers.size(); ++committed) {
      bytes += writers[committed].bytes_written();
      writers[committed].commit();
    }
  } catch (...) {
    for (size_t k = 0; k < committed; ++k) std::remove(writers[k].path().c_str());
    throw;
  }

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t total = opt.train + opt.test;
  std::printf("wrote %s (preset %s, seed %llu): %.1f MB in %.2f s (%.0f samples/s)\n",
              opt.out.c_str(), opt.preset.c_str(), static_cast<unsigned long long>(opt.seed),
              static_cast<double>(bytes) / 1e6, seconds, static_cast<double>(total) / seconds);
  const double generate_seconds = train.generate_seconds + test.generate_seconds;
  std::printf("  generation alone: %.0f samples/s on one core\n",
              static_cast<double>(total) / generate_seconds);
  std::printf("  train: %lld samples in %lld file(s), CTR %.4f, oracle AUC %.4f\n",
              static_cast<long long>(opt.train), static_cast<long long>(opt.shards), train.ctr,
              train.oracle_auc);
  if (opt.test > 0) {
    std::printf("  test:  %lld samples, CTR %.4f, oracle AUC %.4f\n",
                static_cast<long long>(opt.test), test.ctr, test.oracle_auc);
  } else {
    std::printf("  test:  0 samples (test.tsv is empty)\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Writes a synthetic CTR data set: schema.toml, train/test text records and "
      "meta.json (see docs/data.md)."};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.option_defaults()->always_capture_default();
  Options opt;
  app.add_option("--out", opt.out, "Output directory (created if missing)")->required();
  app.add_option("--train", opt.train, "Number of training samples")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--test", opt.test, "Number of test samples (indices after the training ones)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--seed", opt.seed, "Seed of the synthetic world and samples")
      ->capture_default_str();
  app.add_option("--preset", opt.preset, "Generator preset")
      ->capture_default_str()
      ->check(CLI::IsMember({"demo", "din-bench"}));
  app.add_option("--shards", opt.shards,
                 "Split the training samples into this many files of contiguous, near-equal "
                 "ranges")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app.add_option("--chunk", opt.chunk, "Samples generated and written per step")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--log-level", opt.log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockstep-datagen: error: %s\n", e.what());
    return 1;
  }
}

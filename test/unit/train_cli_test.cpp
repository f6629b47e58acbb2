// End-to-end checks of lockstep-train: it learns (held-out AUC well above chance and printed
// next to the oracle), reads a lockstep-datagen directory and a TOML config, and bad flags or
// config fail with a clear message and a non-zero exit code.

#include <catch2/catch.hpp>

#include <regex>

#include "data_test_util.h"
#include "lockstep/config.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const std::string kTrain = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-train";
const std::string kDatagen = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-datagen";
const std::string kDemoConfig = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/configs/demo.toml";

/// The numbers of "result: AUC a vs oracle AUC b".
std::pair<double, double> result_aucs(const std::string& output) {
  std::smatch m;
  REQUIRE(
      std::regex_search(output, m, std::regex(R"(result: AUC ([0-9.]+) vs oracle AUC ([0-9.]+))")));
  return {std::stod(m[1]), std::stod(m[2])};
}
}  // namespace

TEST_CASE("lockstep-train learns on generated data and reports AUC next to the oracle",
          "[train][cli]") {
  test::TempDir scratch;
  std::string out;
  const std::string metrics = scratch.file("metrics.jsonl");
  REQUIRE(test::run_tool(kTrain,
                         "--device cpu --train-samples 60000 --test-samples 10000 --epochs 2 "
                         "--table-rows 16384 --metrics " +
                             metrics,
                         scratch, out) == 0);
  INFO(out);
  const auto [auc, oracle] = result_aucs(out);
  CHECK(oracle > 0.75);
  CHECK(auc > 0.62);  // chance is 0.5; 60k samples get well above it
  CHECK(auc < oracle);
  CHECK_THAT(out, Contains("samples/s"));
  std::ifstream in(metrics);
  std::string line;
  int evals = 0;
  while (std::getline(in, line)) {
    if (line.find("\"event\":\"eval\"") == std::string::npos) continue;
    ++evals;  // without --valid the test data is evaluated each epoch, for monitoring
    CHECK_THAT(line, Contains("\"split\":\"test\"") && Contains("\"model\":{\"auc\":"));
  }
  CHECK(evals == 2);
}

TEST_CASE("lockstep-train reads a lockstep-datagen directory with a TOML config", "[train][cli]") {
  test::TempDir scratch;
  std::string out;
  const std::string dir = scratch.file("data");
  REQUIRE(test::run_tool(kDatagen, "--out " + dir + " --train 20000 --test 4000 --preset demo",
                         scratch, out) == 0);
  REQUIRE(test::run_tool(kTrain, "--device cpu --data " + dir + " --config " + kDemoConfig, scratch,
                         out) == 0);
  INFO(out);
  const auto [auc, oracle] = result_aucs(out);
  CHECK(oracle > 0.7);  // read from meta.json
  CHECK(auc > 0.55);
}

TEST_CASE("lockstep-train rejects bad flags and configs with a clear message",
          "[train][cli][errors]") {
  test::TempDir scratch;
  std::string out;
  CHECK(test::run_tool(kTrain, "--device tpu --train-samples 100", scratch, out) != 0);
  CHECK_THAT(out, Contains("--device = 'tpu'") && Contains("auto, cpu, cuda"));
  CHECK(test::run_tool(kTrain, "--batch-size 0", scratch, out) != 0);
  CHECK_THAT(out, Contains("--batch-size"));
  const std::string bad = scratch.write("bad.toml",
                                        "[model]\n[model.mlp]\nwidths = [8, 1]\n"
                                        "activation = \"gelu\"\n");
  CHECK(test::run_tool(kTrain, "--device cpu --train-samples 100 --config " + bad, scratch, out) !=
        0);
  CHECK_THAT(out, Contains("bad.toml:4") && Contains("model.mlp.activation = 'gelu'"));
}

TEST_CASE("The shipped demo config loads and describes the synthetic schema", "[train][config]") {
  const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  Context ctx;
  auto model = models::load_model<float>(kDemoConfig, gen.schema(), ctx);
  const auto& c = dynamic_cast<models::EmbeddingMlp<float>&>(*model).config();
  CHECK(c.tables.size() == 7);
  CHECK(c.fields.size() == 9);
  CHECK(c.mlp.widths == std::vector<int64_t>{200, 80, 1});
  CHECK(c.sparse_optimizer.lr == Approx(0.5));
}

TEST_CASE("lockstep-train trains the built-in DIN and BST and the shipped configs load",
          "[train][cli][sequence]") {
  test::TempDir scratch;
  std::string out;
  for (const std::string model : {"din", "bst"}) {
    INFO(model);
    REQUIRE(test::run_tool(kTrain,
                           "--device cpu --model " + model +
                               " --train-samples 4000 --test-samples 2000 --batch-size 256 "
                               "--table-rows 4096 --log-every 0",
                           scratch, out) == 0);
    INFO(out);
    const auto [auc, oracle] = result_aucs(out);
    CHECK(auc > 0.5);
    CHECK(oracle > 0.7);
  }
  const std::string root = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/configs/";
  CHECK(models::model_kind(root + "din.toml") == "din");
  const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  Context ctx;
  auto din = models::load_model<float>(root + "din.toml", gen.schema(), ctx);
  CHECK(dynamic_cast<models::Din<float>&>(*din).config().fields[3].max_len == 20);
  auto bst = models::load_model<float>(root + "bst.toml", gen.schema(), ctx);
  CHECK(dynamic_cast<models::Bst<float>&>(*bst).config().transformer.heads == 8);
}

TEST_CASE("lockstep-train --set overrides keys of the model configuration; a dual model with an "
          "FM teacher trains on data without sequences",
          "[train][cli][config]") {
  test::TempDir scratch;
  std::string out;
  const std::string common =
      " --device cpu --train-samples 2000 --test-samples 1000 --batch-size 256 --log-every 0";
  // On the built-in model: applied (the parameter count is the overridden model's).
  REQUIRE(test::run_tool(kTrain, "--set model.mlp.widths=[8,1] --set seed=7 --table-rows 4096" +
                                     common,
                         scratch, out) == 0);
  INFO(out);
  const data::SyntheticGenerator gen(data::SyntheticConfig::demo());
  Context ctx;
  const std::string preset = models::preset_config_text("embedding_mlp", 4096);
  auto small = models::build_model<float>(
      models::apply_overrides(preset, {"model.mlp.widths=[8,1]"}, "built-in"), "built-in",
      gen.schema(), ctx);
  auto plain = models::build_model<float>(preset, "built-in", gen.schema(), ctx);
  const int64_t n = small->dense_params().trainable_size();
  CHECK(n != plain->dense_params().trainable_size());
  CHECK_THAT(out, Contains(std::to_string(n) + " dense parameters"));
  // On a file: unknown keys and bad values name the --set argument.
  CHECK(test::run_tool(kTrain, "--config " + kDemoConfig + " --set model.mlp.wdiths=[64,1]" +
                                   common,
                       scratch, out) != 0);
  CHECK_THAT(out, Contains("--set model.mlp.wdiths=[64,1]: unknown key model.mlp.wdiths"));
  CHECK(test::run_tool(kTrain, "--set optimizer.lr=-1" + common, scratch, out) != 0);
  CHECK_THAT(out, Contains("--set optimizer.lr=-1: optimizer.lr = -1"));

  // dual_fm.toml on examples/data/ads (no history: fm + cross teacher), exporting the student.
  const std::string data = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/data/";
  REQUIRE(test::run_tool(kTrain,
                         "--device cpu --schema " + data + "ads.schema.toml --train " + data +
                             "ads-train.csv --test " + data + "ads-test.csv --batch-size 64 "
                             "--log-every 0 --config " + std::string(LOCKSTEP_SOURCE_DIR) +
                             "/examples/configs/dual_fm.toml --export " +
                             scratch.file("student"),
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("teacher AUC") && Contains("exported the student"));
}

TEST_CASE("lockstep-train trains the dual DNN, exports the student, and lockstep-predict scores "
          "with it; student-only training warm-starts from a checkpoint",
          "[train][cli][dual]") {
  test::TempDir scratch;
  std::string out;
  const std::string data = scratch.file("data"), bundle = scratch.file("student");
  const std::string ckpt = scratch.file("ckpt");
  REQUIRE(test::run_tool(kDatagen, "--out " + data + " --train 6000 --test 3000 --preset demo",
                         scratch, out) == 0);
  const std::string common = " --device cpu --data " + data + " --batch-size 256 --table-rows 4096 --log-every 0";
  REQUIRE(test::run_tool(kTrain, "--model dual --export " + bundle + " --checkpoint-dir " + ckpt + common,
                         scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("[student]; teacher AUC") && Contains("exported the student"));
  const auto [student_auc, oracle] = result_aucs(out);
  CHECK(student_auc > 0.5);

  const std::string predict = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-predict";
  const std::string scores = scratch.file("scores.txt");
  REQUIRE(test::run_tool(predict, "--bundle " + bundle + " --data " + data + "/test.tsv --schema " +
                                      data + "/schema.toml --out " + scores,
                         scratch, out) == 0);
  INFO(out);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(AUC ([0-9.]+), logloss)")));
  // The bundle scores the held-out set as the trainer's own evaluation of the student did.
  CHECK(std::stod(m[1]) == Approx(student_auc).margin(1e-4));
  std::ifstream in(scores);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  CHECK(lines == 3000);
  // The same records from a binary cache (what lockstep-train and lockstep-eval read too): the
  // same scores.
  const std::string tool = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-data";
  const std::string cache = scratch.file("test.cache");
  REQUIRE(test::run_tool(
              tool,
              "convert --schema " + data + "/schema.toml --out " + cache + " " + data + "/test.tsv",
              scratch, out) == 0);
  REQUIRE(test::run_tool(predict,
                         "--bundle " + bundle + " --data " + cache + " --schema " + data +
                             "/schema.toml --out " + scratch.file("cache-scores.txt"),
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("scored 3000 records"));
  std::ifstream a(scores), b(scratch.file("cache-scores.txt"));
  CHECK(std::string(std::istreambuf_iterator<char>(a), {}) ==
        std::string(std::istreambuf_iterator<char>(b), {}));
  // A saved model or checkpoint is not a bundle: said so.
  const std::string latest = ckpt + "/" + [&] {
    std::ifstream f(ckpt + "/LATEST");
    std::string name;
    std::getline(f, name);
    return name;
  }();
  CHECK(test::run_tool(
            predict,
            "--bundle " + latest + " --data " + cache + " --schema " + data + "/schema.toml",
            scratch, out) == 1);
  CHECK_THAT(out, Contains("the manifest of a saved model or checkpoint"));

  // Online learning: only the student trains, starting from the joint run's checkpoint.
  REQUIRE(test::run_tool(kTrain, "--model dual --student-only --init-from " + latest + common,
                         scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("warm start from"));
  CHECK(test::run_tool(kTrain, "--model din --export " + bundle + common, scratch, out) != 0);
  CHECK_THAT(out, Contains("--export writes a student bundle"));
}

TEST_CASE("lockstep-train states its version, its defaults, samples per epoch and replica hashes",
          "[train][cli]") {
  test::TempDir scratch;
  std::string out;
  REQUIRE(test::run_tool(kTrain, "--version", scratch, out) == 0);
  CHECK_THAT(out, Contains(LOCKSTEP_VERSION_STRING));
  REQUIRE(test::run_tool(kTrain, "--help", scratch, out) == 0);
  CHECK_THAT(out, Contains("=1000000"));  // --train-samples' default
  CHECK_THAT(out, Contains("=1024"));     // --batch-size's default
  REQUIRE(test::run_tool(kTrain,
                         "--device cpu --train-samples 5000 --test-samples 1000 --epochs 2 "
                         "--table-rows 4096 --log-every 0",
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("epoch 1 trained on 5000 samples (all ranks)"));
  CHECK_THAT(out, Contains("epoch 2 trained on 5000 samples (all ranks)"));
  CHECK_THAT(out, Contains("identical on all 1 rank(s)"));
}

TEST_CASE("lockstep-train refuses an empty test.tsv unless told to accept it", "[train][cli]") {
  test::TempDir scratch;
  std::string out;
  const std::string dir = scratch.file("data");
  REQUIRE(test::run_tool(kDatagen, "--out " + dir + " --train 3000 --test 500 --preset demo",
                         scratch, out) == 0);
  { std::ofstream truncate(dir + "/test.tsv", std::ios::trunc); }
  const std::string args = "--device cpu --log-every 0 --table-rows 4096 --data " + dir;
  CHECK(test::run_tool(kTrain, args, scratch, out) == 1);
  CHECK_THAT(out, Contains("--test " + dir + "/test.tsv: the data is empty (pass --allow-empty-data"));
  CHECK(test::run_tool(kTrain, args + " --allow-empty-data", scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("trained on 3000 samples"));
}

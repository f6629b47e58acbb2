// The user's workflow around lockstep-train: model selection on --valid, the JSONL metrics
// schema, lockstep-eval on any kind of saved model (equal to the training-time evaluation), and
// lockstep-plot.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <set>

#include "data_test_util.h"
#include "lockstep/train/checkpoint.h"
#include "model_fixture.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {
const std::string kBin = std::string(LOCKSTEP_BINARY_DIR) + "/examples/";
const std::string kTrain = kBin + "lockstep-train", kEval = kBin + "lockstep-eval";
const std::string kConfigs = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/configs/";

/// A lockstep-datagen directory with train.tsv, valid.tsv and test.tsv.
std::string make_data(const test::TempDir& scratch, int64_t train, int64_t held_out) {
  std::string out;
  const std::string dir = scratch.file("data");
  REQUIRE(test::run_tool(kBin + "lockstep-datagen",
                         fmt::format("--out {} --train {} --test {} --preset demo", dir, train,
                                     2 * held_out),
                         scratch, out) == 0);
  // The generated test records, split in halves: validation and test.
  std::ifstream in(dir + "/test.tsv");
  std::string all, line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line + "\n");
  REQUIRE(lines.size() == static_cast<size_t>(2 * held_out));
  std::string valid, test;
  for (size_t i = 0; i < lines.size(); ++i) (i < lines.size() / 2 ? valid : test) += lines[i];
  scratch.write("data/valid.tsv", valid);
  scratch.write("data/test.tsv", test);
  return dir;
}

std::vector<json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}
}  // namespace

TEST_CASE("The JSONL metrics schema: common fields on every line, 1-based epochs, running loss "
          "and loss terms, every output's metrics",
          "[train][cli][metrics]") {
  test::TempDir scratch;
  const std::string data = make_data(scratch, 4000, 1000);
  const std::string metrics = scratch.file("m.jsonl");
  std::string out;
  REQUIRE(test::run_tool(kTrain,
                         "--device cpu --data " + data + " --config " + kConfigs +
                             "dual.toml --epochs 2 --batch-size 256 --log-every 4 --metrics " +
                             metrics,
                         scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("teacher ") && Contains(" kd ") && Contains("valid at step"));
  const auto lines = read_lines(metrics);
  std::map<std::string, int> events;
  for (const auto& j : lines) {
    INFO(j.dump());
    REQUIRE(j.at("event").is_string());
    REQUIRE(j.at("time").is_string());
    CHECK(j.at("time").get<std::string>().size() == 24);  // 2026-11-30T17:05:09.123Z
    CHECK(j.at("elapsed_s").is_number());
    CHECK(j.at("step").is_number_unsigned());
    CHECK(j.at("epoch").get<int>() >= 1);
    CHECK(j.at("epoch").get<int>() <= 2);
    CHECK(j.at("samples").is_number_integer());
    const std::string e = j["event"];
    ++events[e];
    if (e == "train") {
      CHECK(j.at("loss").get<double>() > 0);
      const auto& terms = j.at("loss_terms");
      for (const char* t : {"teacher", "student", "kd", "hint"}) CHECK(terms.at(t).is_number());
      // The loss is the weighted sum of its terms (dual.toml: weights 1, 1, 1, 0; the kd term as
      // weighted by its warm-up ramp).
      CHECK(j["loss"].get<double>() ==
            Approx(terms["teacher"].get<double>() + terms["student"].get<double>() +
                   terms["kd"].get<double>() + 0.0 * terms["hint"].get<double>())
                .epsilon(1e-4));
      CHECK(j.at("lr").at("dense") == 0.001);
      CHECK(j.at("lr").at("sparse") == 0.5);
      for (const char* k : {"samples_per_s", "step_ms", "data_wait_ms", "eta_s"})
        CHECK(j.contains(k));
      CHECK(j["eta_s"].is_number());  // the training file is counted
    }
    if (e == "eval") {
      CHECK(j.at("eval_samples") == 1000);
      for (const char* output : {"student", "teacher"})
        for (const char* k : {"auc", "logloss", "normalized_entropy", "mean_prediction",
                              "observed_ctr", "calibration"})
          CHECK(j.at("metrics").at(output).at(k).is_number());
      if (j.at("split") == "valid") CHECK(j.at("selection").at("metric") == "auc");
    }
  }
  CHECK(events["start"] == 1);
  CHECK(events["train"] == 2 * 4);  // 16 steps per epoch, a line every 4
  CHECK(events["epoch"] == 2);
  CHECK(events["eval"] == 3);       // valid after each epoch, test at the end
  CHECK(events["end"] == 1);
  CHECK(lines.back()["event"] == "eval");
  CHECK(lines.back()["split"] == "test");

  // lockstep-plot draws it (Debian's python3 has matplotlib: scripts/deps.sh).
  const std::string png = scratch.file("curves.png");
  REQUIRE(test::run_tool("/usr/bin/python3",
                         std::string(LOCKSTEP_SOURCE_DIR) + "/tools/lockstep-plot " + metrics +
                             " --out " + png,
                         scratch, out) == 0);
  INFO(out);
  std::ifstream in(png, std::ios::binary);
  std::string magic(8, '\0');
  in.read(&magic[0], 8);
  CHECK(magic == "\x89PNG\r\n\x1a\n");
  CHECK(test::run_tool("/usr/bin/python3",
                       std::string(LOCKSTEP_SOURCE_DIR) + "/tools/lockstep-plot " + data +
                           "/schema.toml --out " + png,
                       scratch, out) != 0);
  CHECK_THAT(out, Contains("schema.toml:1: not a JSON line"));
}

TEST_CASE("lockstep-eval scores every model kind as the training-time evaluation did",
          "[train][cli][eval]") {
  test::TempDir scratch;
  const std::string data = make_data(scratch, 3000, 600);
  for (const std::string kind : {"demo", "din", "bst", "dual"}) {
    INFO(kind);
    std::string out;
    const std::string ck = scratch.file("ck-" + kind), metrics = scratch.file(kind + ".jsonl");
    REQUIRE(test::run_tool(kTrain,
                           "--device cpu --data " + data + " --config " + kConfigs + kind +
                               ".toml --epochs 2 --batch-size 256 --log-every 0 --metrics " +
                               metrics + " --checkpoint-dir " + ck + " --save " +
                               scratch.file("saved-" + kind),
                           scratch, out) == 0);
    INFO(out);
    // The validation line of the best step, and the final test line.
    json best_valid, test_line;
    for (const auto& j : read_lines(metrics)) {
      if (j["event"] != "eval") continue;
      if (j["split"] == "valid" && j["selection"]["improved"].get<bool>()) best_valid = j;
      if (j["split"] == "test") test_line = j;
    }
    REQUIRE(!best_valid.is_null());
    REQUIRE(!test_line.is_null());
    const std::string report = scratch.file(kind + "-eval.json");
    REQUIRE(test::run_tool(kEval, "--device cpu --batch-size 256 --model " + ck +
                                      "/best --data " + data + "/valid.tsv --json " + report,
                           scratch, out) == 0);
    INFO(out);
    std::ifstream in(report);
    const json r = json::parse(in);
    CHECK(r.at("step") == best_valid.at("step"));
    CHECK(r.at("metrics") == best_valid.at("metrics"));  // bitwise: the same doubles
    // --save wrote the restored best model: the test evaluation at the end used it.
    REQUIRE(test::run_tool(kEval, "--device cpu --batch-size 256 --model " +
                                      scratch.file("saved-" + kind) + " --data " + data +
                                      "/test.tsv --json " + report + " --scores " +
                                      scratch.file("scores.tsv") + " --latency",
                           scratch, out) == 0);
    std::ifstream in2(report);
    const json r2 = json::parse(in2);
    // --latency (timed before the evaluation, each dual tower alone) leaves the scores alone.
    CHECK(r2.at("metrics") == test_line.at("metrics"));
    const json& latency = r2.at("latency");
    CHECK(latency.size() == r2.at("metrics").size());
    for (const auto& [name, l] : latency.items()) {
      CHECK(l.at("ms").get<double>() > 0);
      CHECK(l.at("dense_parameters").get<int64_t>() > 0);
      CHECK_THAT(out, Catch::Matchers::Contains("): " + name + ": "));
    }
    if (kind == "dual")  // dual.toml: teacher MLP 512-256-128 over DIN + cross, student 128-64
      CHECK(latency.at("teacher").at("dense_parameters").get<int64_t>() >
            3 * latency.at("student").at("dense_parameters").get<int64_t>());
    std::ifstream scores(scratch.file("scores.tsv"));
    std::string header;
    std::getline(scores, header);
    CHECK(header == (kind == "dual" ? "label\tstudent\tteacher" : "label\tmodel"));
  }
}

TEST_CASE("Model selection flags: --early-stop needs --valid; lockstep-eval names what it cannot "
          "load",
          "[train][cli][eval][errors]") {
  test::TempDir scratch;
  std::string out;
  CHECK(test::run_tool(kTrain, "--device cpu --train-samples 2000 --early-stop 2", scratch, out) ==
        1);
  CHECK_THAT(out, Contains("--early-stop needs validation data (--valid)"));
  CHECK(test::run_tool(kEval, "--model " + scratch.path().string() + " --data x.tsv", scratch,
                       out) == 1);
  CHECK_THAT(out, Contains("manifest.json: missing"));
  // Every checkpoint of lockstep-train is a complete model (here of a built-in model): the data
  // is what is missing.
  const std::string ck = scratch.file("ck");
  REQUIRE(test::run_tool(kTrain, "--device cpu --train-samples 2000 --test-samples 500 "
                                 "--table-rows 1024 --log-every 0 --checkpoint-dir " + ck,
                         scratch, out) == 0);
  CHECK(test::run_tool(kEval, "--model " + ck + " --data x.tsv", scratch, out) == 1);
  CHECK_THAT(out, Contains("--data 'x.tsv': no such file"));
  // A checkpoint without model.toml (an older lockstep's, or a driver's without model_files).
  Context ctx;
  auto model = test::fixture_model(ctx);
  train::CheckpointMeta meta;
  meta.model = model->name();
  const std::string bare = train::write_checkpoint(scratch.file("bare"), meta, *model, ctx);
  CHECK(test::run_tool(kEval, "--model " + bare + " --data x.tsv", scratch, out) == 1);
  CHECK_THAT(out, Contains("without model.toml and schema.toml"));
  // A model.toml that builds another model than the checkpoint holds (what a change of defaults
  // does to a model.toml that left them unwritten): named, with the way out (--set). Saved with
  // `residual` residual tables, evaluated with the other setting.
  const std::string key = "model.distillation.student_residual_embeddings=";
  const auto mismatch = [&](bool residual) {
    const std::string saved = scratch.file(residual ? "residual" : "plain");
    REQUIRE(test::run_tool(kTrain, "--device cpu --model dual --train-samples 2000 "
                                   "--test-samples 500 --table-rows 1024 --log-every 0 --set " +
                                       key + (residual ? "true" : "false") + " --save " + saved,
                           scratch, out) == 0);
    CHECK(test::run_tool(kEval, "--model " + saved + " --data x.tsv --set " + key +
                                    (residual ? "false" : "true"),
                         scratch, out) == 1);
  };
  mismatch(false);
  CHECK_THAT(out, Contains("model.toml builds a model that does not fit this checkpoint") &&
                      Contains("--set " + key + "false"));
  mismatch(true);  // a checkpoint tensor the model lacks is an error too, not left out
  CHECK_THAT(out, Contains("@student.accum' is not in this model"));
}

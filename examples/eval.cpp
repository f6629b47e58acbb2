// lockstep-eval: evaluates a complete model (a checkpoint, the trainer's best/, or
// lockstep-train --save) of any kind on data files, every output of it (the dual DNN: the
// student and the teacher): AUC, log loss, normalized entropy and calibration (mean predicted
// vs observed CTR), the same numbers as the trainer's evaluation of those parameters.
//
//   lockstep-eval --model ckpt/best --data valid.csv [--schema s.toml] [--scores scores.tsv]
//                 [--json metrics.json] [--batch-size 1024] [--device auto] [--latency]
//
// --latency also times inference per output on the first batch (the dual DNN: each tower alone,
// as serving it would run) and counts each output's dense parameters.
//
// See docs/training.md, "Evaluating and scoring a model".

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "lockstep/config.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/device.h"
#include "lockstep/core/logging.h"
#include "lockstep/models/dual_dnn.h"
#include "lockstep/train/dataset.h"
#include "lockstep/train/evaluation.h"
#include "lockstep/train/saved_model.h"
#include "train/progress.h"

using namespace lockstep;

namespace {

/// The columns a model reads (labels and ignored columns aside), as "name (kind ...)".
std::vector<std::string> feature_columns(const lockstep::data::Schema& schema) {
  using lockstep::data::ColumnKind;
  std::vector<std::string> out;
  for (const auto& c : schema.columns()) {
    if (c.kind == ColumnKind::kLabel || c.kind == ColumnKind::kIgnore) continue;
    std::string what = fmt::format("{} ({}", c.name, lockstep::data::to_string(c.kind));
    if (c.kind == ColumnKind::kDense)
      what += fmt::format(", dim {}, clip [{}, {}], {}", c.dim, c.clip_min, c.clip_max,
                          lockstep::data::to_string(c.transform));
    else
      what += fmt::format(
          "{}{}", c.hash ? ", hashed" : "",
          c.kind == ColumnKind::kSequence ? fmt::format(", max_len {}", c.max_len) : std::string());
    out.push_back(what + ")");
  }
  return out;
}

/// Data read with another schema (another format) must give the model the same features in
/// the same order: a swapped pair of columns would feed one column's ids to another's table.
void check_same_features(const lockstep::data::Schema& schema, const std::string& schema_path,
                         const lockstep::data::Schema& model_schema,
                         const std::string& model_schema_path) {
  const auto given = feature_columns(schema), wanted = feature_columns(model_schema);
  for (size_t i = 0; i < std::max(given.size(), wanted.size()); ++i) {
    const std::string a = i < given.size() ? given[i] : "nothing";
    const std::string b = i < wanted.size() ? wanted[i] : "nothing";
    LOCKSTEP_CHECK(a == b,
                   "--schema {}: feature column {} is {}, but the model's schema {} has {} there: "
                   "the columns the model reads must be the same, in the same order (only the "
                   "format may differ)",
                   schema_path, i + 1, a, model_schema_path, b);
  }
}

struct Options {
  std::string model, schema, scores, json, device = "auto", on_bad_record = "fail";
  std::vector<std::string> data, overrides;
  int64_t batch_size = 1024;
  int data_workers = 1;
  bool latency = false;
};

/// Median milliseconds of `fn` over 10 runs (after 2 unmeasured), the device synchronised.
double median_ms(const Context& ctx, const std::function<void()>& fn) {
  for (int i = 0; i < 2; ++i) fn();
  ctx.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ctx.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::nth_element(ms.begin(), ms.begin() + 5, ms.end());
  return ms[5];
}

/// Per output: inference time on `batch` (the embedding lookups and that output's layers only)
/// and dense parameter count. Prints a line per output, returns them as JSON.
nlohmann::ordered_json time_inference(const Context& ctx, models::Model<float>& model,
                                      const data::Batch& batch) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  const auto names = model.output_names();
  auto* dual = dynamic_cast<models::DualDnn<float>*>(&model);
  std::vector<std::pair<std::string, double>> times;
  for (size_t i = 0; i < names.size(); ++i) {
    int64_t params = model.dense_params().trainable_size();
    if (dual) {
      using Out = models::DualDnn<float>::Output;
      dual->set_output(i == 0 ? Out::Student : Out::Teacher);
      dual->set_single_tower_inference(true);
      // The teacher's dense parameters come first, then the student's (and its hint projection,
      // used in training only).
      params = 0;
      const auto& ps = dual->dense_params();
      for (const auto& e : ps.entries()) {
        if (!e.trainable || e.name.rfind("student.hint_projection", 0) == 0) continue;
        if ((e.offset >= dual->student_begin()) == (i == 0)) params += e.numel();
      }
    }
    const double ms = median_ms(ctx, [&] { model.forward(ctx, batch, false); });
    std::printf("%s\n", fmt::format("inference ({}, batch {}, median of 10): {}: {:.3f} ms "
                                    "({:.0f} records/s), {} dense parameters ({:.1f} KiB)",
                                    ctx.device().str(), batch.size, names[i], ms,
                                    batch.size / (ms * 1e-3), params, params * 4.0 / 1024)
                            .c_str());
    out[names[i]] = nlohmann::ordered_json{{"ms", ms}, {"records_per_s", batch.size / (ms * 1e-3)},
                     {"dense_parameters", params}};
  }
  if (dual) {
    dual->set_single_tower_inference(false);
    dual->set_output(models::DualDnn<float>::Output::Student);
  }
  return out;
}

int run(const Options& o) {
  Context ctx(select_device(o.device));
  train::SavedModel saved = train::load_saved_model(o.model, ctx, o.overrides);
  // The data is read with the model's schema unless another (equal in its columns) is given.
  const data::Schema schema =
      o.schema.empty() ? saved.schema : data::Schema::load_or_preset(o.schema);
  check_same_features(schema, o.schema, saved.schema, saved.path + "/schema.toml");
  train::DatasetOptions options;
  options.source.batch_size = o.batch_size;
  options.source.workers = o.data_workers;
  options.source.on_bad_record =
      o.on_bad_record == "skip" ? train::BadRecordPolicy::kSkip : train::BadRecordPolicy::kFail;
  options.schema_flag = "--schema";
  options.schema_name = o.schema.empty() ? saved.path + "/schema.toml" : o.schema;
  train::Dataset set = train::open_dataset(o.data, &schema, options, "--data");
  const auto& files = set.files;
  train::BatchSource* source = set.source.get();
  nlohmann::ordered_json latency;
  if (o.latency) {  // on the first batch of a second reader of the same data
    train::Dataset first = train::open_dataset(o.data, &schema, options, "--data");
    first.source->start_epoch(0);
    data::Batch batch;
    LOCKSTEP_CHECK(first.source->next(batch), "--latency: --data has no records");
    latency = time_inference(ctx, *saved.model, batch);
  }
  train::LocalTrainer<float> local(*saved.model, ctx);
  const auto t0 = std::chrono::steady_clock::now();
  const train::Scores scores = train::score(local, *source);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const train::EvalResult r = train::eval_result(scores);
  if (const std::string report = source->epoch_report(); !report.empty())
    log().warn("--data: {}", report);
  std::printf("%s\n", fmt::format("evaluated {} ({} model, step {}) on {} records in {:.2f} s "
                                  "({:.0f} records/s, {})",
                                  saved.path, saved.meta.model, saved.meta.step, r.samples,
                                  seconds, r.samples / std::max(seconds, 1e-9),
                                  ctx.device().str())
                          .c_str());
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    const auto& m = r.outputs[i];
    std::printf("%s\n", fmt::format("{}: AUC {:.4f}, logloss {:.4f}, normalized entropy {:.4f}, "
                                    "mean prediction {:.4f} vs observed CTR {:.4f} "
                                    "(calibration {:.3f})",
                                    r.output_names[i], m.auc, m.logloss, m.normalized_entropy,
                                    m.mean_prediction, m.observed_ctr, m.calibration)
                            .c_str());
    metrics[r.output_names[i]] = train::metrics_json(m);
  }
  std::fflush(stdout);
  if (!o.json.empty()) {
    nlohmann::ordered_json j{{"model", saved.path}, {"kind", saved.meta.model},
                             {"step", saved.meta.step}, {"data", files},
                             {"samples", r.samples}, {"metrics", metrics}};
    if (o.latency) j["latency"] = latency;
    write_file_atomically(o.json, j.dump(2) + "\n");
  }
  if (!o.scores.empty()) {  // label and each output's probability, in record order
    std::string text = "label";
    for (const auto& name : scores.output_names) text += "\t" + name;
    text += "\n";
    for (size_t i = 0; i < scores.labels.size(); ++i) {
      text += fmt::format("{:g}", scores.labels[i]);
      for (const auto& p : scores.probs) text += fmt::format("\t{:.9g}", p[i]);
      text += "\n";
    }
    write_file_atomically(o.scores, text);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep-eval: evaluate and score a saved model (checkpoint, best/, --save) on data files"};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.option_defaults()->always_capture_default();
  Options o;
  app.add_option("--model", o.model,
                 "a complete model: checkpoint directory or root (its LATEST), best/, or "
                 "lockstep-train --save DIR")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--data", o.data, "data: files, directories or globs (text or lockstep-data caches)")
      ->required();
  app.add_option("--schema", o.schema,
                 "schema of text data when it differs in format from the model's schema.toml");
  app.add_option("--scores", o.scores,
                 "write a TSV here: a header, then per record its label and each output's "
                 "probability");
  app.add_option("--json", o.json, "write the metrics as JSON here");
  app.add_option("--batch-size", o.batch_size, "records per batch")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--data-workers", o.data_workers, "decoding threads")->check(CLI::Range(0, 64));
  app.add_option("--on-bad-record", o.on_bad_record,
                 "a record that does not parse: fail (stop with file:line) or skip (count it, "
                 "reported)")
      ->check(CLI::IsMember({"fail", "skip"}));
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N");
  app.add_option("--set", o.overrides,
                 "KEY=VALUE: edit the model's model.toml before building it (as lockstep-train "
                 "--set), for a model whose model.toml left to the defaults what a later lockstep "
                 "changed");
  app.add_flag("--latency", o.latency,
               "also time inference per output on the first batch (the dual DNN: each tower "
               "alone) and count each output's dense parameters");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    log().error("internal error: {}", e.what());
    return 70;
  }
}

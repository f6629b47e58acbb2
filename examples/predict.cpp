// lockstep-predict: scores data with an exported student bundle (DualDnn::export_student,
// lockstep-train --export), through the serving API only — no teacher code path.
//
//   lockstep-predict --bundle out/student --data out/data/test.tsv --schema out/data/schema.toml
//                    [--out scores.txt] [--batch-size 4096] [--device auto]
//
// --data takes what lockstep-train and lockstep-eval take: files, directories, globs, text or
// binary caches (lockstep-data convert), read in order.
//
// Prints the number of records, samples/s and, when the data has labels, AUC and log loss.
// --out writes one probability per line, in record order (atomically).

#include <CLI/CLI.hpp>

#include <fstream>

#include <chrono>
#include <cmath>

#include "lockstep/config.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"
#include "lockstep/serving/student_model.h"
#include "lockstep/train/dataset.h"
#include "lockstep/train/metrics.h"

using namespace lockstep;

int main(int argc, char** argv) {
  CLI::App app{"lockstep-predict: score records with an exported student bundle"};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.option_defaults()->always_capture_default();
  std::string bundle, schema_path, out_path, device_flag = "auto";
  std::vector<std::string> data_paths;
  int64_t batch_size = 4096;
  app.add_option("--bundle", bundle, "student bundle directory")->required()->check(CLI::ExistingDirectory);
  app.add_option("--data", data_paths,
                 "records: files, directories or globs, text (the schema's format) or caches")
      ->required();
  app.add_option("--schema", schema_path, "schema of the records")->required()->check(CLI::ExistingFile);
  app.add_option("--out", out_path, "write the probabilities here, one per line");
  app.add_option("--batch-size", batch_size, "records per batch")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--device", device_flag, "auto, cpu, cuda or cuda:N");
  CLI11_PARSE(app, argc, argv);
  try {
    Context ctx(select_device(device_flag));
    // A directory of versioned bundles (lockstep-train --follow --export): the one LATEST names.
    if (std::ifstream latest(bundle + "/LATEST"); latest.good()) {
      std::string name;
      std::getline(latest, name);
      LOCKSTEP_CHECK(!name.empty() && name.find('/') == std::string::npos,
                     "{}/LATEST does not name a bundle directory", bundle);
      bundle += "/" + name;
    }
    serving::StudentModel student(bundle, ctx);
    const data::Schema schema = data::Schema::load(schema_path);
    std::vector<std::string> columns;
    for (int64_t c : schema.sparse_columns()) columns.push_back(schema.columns()[c].name);
    LOCKSTEP_CHECK(columns == student.columns(),
                   "{}: the schema's sparse columns ({}) differ from the bundle's ({}): score data "
                   "with the schema the student was trained on",
                   schema_path, fmt::join(columns, ", "), fmt::join(student.columns(), ", "));
    LOCKSTEP_CHECK(schema.num_dense() == student.num_dense(),
                   "{}: the schema's dense columns give {} value(s) per record, the bundle's "
                   "student reads {}: score data with the schema the student was trained on",
                   schema_path, schema.num_dense(), student.num_dense());
    train::DatasetOptions options;
    options.source.batch_size = batch_size;
    options.schema_flag = "--schema";
    options.schema_name = schema_path;
    const train::Dataset set = train::open_dataset(data_paths, &schema, options, "--data");
    set.source->start_epoch(0);
    data::Batch batch;
    std::vector<float> probs, labels;
    const auto t0 = std::chrono::steady_clock::now();
    double predict_s = 0;
    while (set.source->next(batch)) {
      const auto s0 = std::chrono::steady_clock::now();
      const auto p = student.predict(batch);
      predict_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      probs.insert(probs.end(), p.begin(), p.end());
      labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
    }
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("scored %zu records with the student bundle %s on %s: %.0f samples/s (model), "
                "%.0f samples/s (with parsing)\n",
                probs.size(), bundle.c_str(), ctx.device().str().c_str(),
                probs.size() / std::max(predict_s, 1e-9), probs.size() / std::max(total_s, 1e-9));
    const double auc = train::roc_auc(probs, labels);
    if (!std::isnan(auc))
      std::printf("AUC %.4f, logloss %.4f\n", auc, train::mean_log_loss_from_probs(probs, labels));
    if (!out_path.empty()) {
      AtomicFileWriter out(out_path);
      std::string text;
      for (float p : probs) text += fmt::format("{:.9g}\n", p);
      out.write(text);
      out.commit();
    }
  } catch (const Error& e) {
    log().error("{}", e.what());
    return 1;
  }
  return 0;
}

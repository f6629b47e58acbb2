// lockstep-train: lockstep data-parallel training of any model (embedding + MLP, DIN, BST, the
// dual DNN, LR/FM/DeepFM) on generated data or files, in one process or under mpirun. Rank 0
// prints held-out AUC (exact, over every rank's shard), next to the oracle (Bayes) AUC of
// generated data, and samples/s; --valid selects the best model (docs/training.md).
//
//   lockstep-train                                   # demo preset, generated in memory
//   mpirun -np 2 lockstep-train --synthetic demo     # two ranks, each a full replica
//   lockstep-train --synthetic din-bench --train-samples 2000000 --device cuda
//   lockstep-train --data out/demo --config examples/configs/demo.toml
//
// See docs/training.md for every flag.

#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "lockstep/comm/communicator.h"
#include "lockstep/config.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/device.h"
#include "lockstep/core/logging.h"
#include "lockstep/data/data_files.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"
#include "lockstep/models/embedding_mlp.h"
#include "lockstep/models/factory.h"
#include "lockstep/train/batch_source.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/collisions.h"
#include "lockstep/train/dataset.h"
#include "lockstep/train/failure.h"
#include "lockstep/train/metrics.h"
#include "lockstep/train/saved_model.h"
#include "lockstep/train/trainer.h"
#include "train/fault_injection.h"
#include "train/host_collectives.h"
#include "train/signals.h"

using namespace lockstep;

namespace {

struct Options {
  std::string config, data_dir, synthetic = "demo", device = "auto", comm = "auto", save, metrics;
  std::string log_level = "info", checkpoint_dir, inject_fault, model = "embedding_mlp";
  std::string export_dir, init_from, schema, on_bad_record = "fail";
  std::string export_sparse;
  int64_t sparse_delta_every = 0;
  bool profile = false;
  std::vector<std::string> train, valid, test;
  std::vector<std::string> set;  // --set key=value overrides of the model configuration
  int64_t max_bad_records = INT64_MAX;
  int data_workers = 1;
  int64_t collision_sample = 100000;
  int keep_checkpoints = 2;
  int64_t eval_every = 0, early_stop = 0;
  std::string select_metric = "auc", best_dir;
  std::string follow;
  double follow_poll = 2, follow_idle_exit = 0;
  int64_t export_every_files = 1;
  bool shuffle = false;
  bool student_only = false;
  int64_t train_samples = 1000000, test_samples = 50000, batch_size = 1024, table_rows = 1 << 17;
  int64_t epochs = 1, log_every = 200, checkpoint_every = 0;
  uint64_t data_seed = 1;
  int threads = 0;
  double comm_timeout = 300, startup_timeout = 120, bucket_mb = 1;
  bool allow_tf32 = false, allow_bf16 = false, no_cuda_graphs = false, resume = false,
       resume_or_start = false, allow_empty_data = false;
};

/// This rank's training and held-out shards, and the oracle AUC of the held-out data.
struct Data {
  data::Schema schema;
  std::unique_ptr<train::BatchSource> train, valid, test;
  double oracle_auc = NAN;
  std::string description;
  std::string file_list;  // "flag file=path bytes=n" lines, compared across ranks
  std::vector<std::string> train_files;
  train::FileSourceOptions follow_options;  // --follow: for each round's files
};

Data synthetic_data(const Options& o, int rank, int ranks) {
  auto config = data::SyntheticConfig::preset(o.synthetic);
  config.seed = o.data_seed;
  auto generator = std::make_shared<const data::SyntheticGenerator>(config);
  Data d;
  d.schema = generator->schema();
  // Held-out samples follow the training ones: disjoint by construction.
  d.train = std::make_unique<train::SyntheticBatchSource>(generator, 0, o.train_samples,
                                                          o.batch_size, rank, ranks);
  d.test = std::make_unique<train::SyntheticBatchSource>(generator, o.train_samples,
                                                         o.test_samples, o.batch_size, rank, ranks);
  std::vector<float> prob;
  const data::Batch test = generator->generate(o.train_samples, o.test_samples, &prob);
  d.oracle_auc = train::roc_auc(prob, test.labels);
  d.description = fmt::format("synthetic '{}' (seed {}): {} train, {} held-out samples",
                              o.synthetic, o.data_seed, o.train_samples, o.test_samples);
  return d;
}

/// Text files from --train/--valid/--test (files, directories, globs) with --schema, or the
/// lockstep-datagen directory --data (schema.toml, the training files of meta.json or train.tsv,
/// valid.tsv when present, test.tsv) with any of those flags overriding its parts.
Data file_data(const Options& o, int rank, int ranks) {
  Data d;
  const std::string dir = o.data_dir;
  std::vector<std::string> train = o.train, valid = o.valid, test = o.test;
  if (!dir.empty()) {
    const train::DataDirectory parts = train::read_data_directory(dir);
    d.oracle_auc = parts.oracle_auc;
    if (train.empty()) train = parts.train;
    if (valid.empty()) valid = parts.valid;
    if (test.empty()) test = parts.test;
  }
  // Binary caches (lockstep-data convert) carry their schema; text files need one.
  const auto train_files = train.empty() ? std::vector<std::string>{}
                                         : data::expand_data_paths(train, "--train");
  const bool cached = !train_files.empty() && train::is_cache_file(train_files.front());
  if (cached && o.schema.empty()) {
    d.schema = data::CacheReader(train_files.front()).schema();
  } else {
    LOCKSTEP_CHECK(!dir.empty() || !o.schema.empty(),
                   "--train and --follow need --schema: a schema TOML file (docs/data.md) or a "
                   "preset (criteo){}",
                   train_files.empty()
                       ? std::string()
                       : fmt::format(" ({} is text, not a data cache of lockstep-data convert, "
                                     "which would carry its schema)",
                                     train_files.front()));
    d.schema = data::Schema::load_or_preset(!o.schema.empty() ? o.schema : dir + "/schema.toml");
  }
  train::DatasetOptions options;
  train::FileSourceOptions& so = options.source;
  so.batch_size = o.batch_size;
  so.rank = rank;
  so.ranks = ranks;
  so.workers = o.data_workers;
  so.on_bad_record = o.on_bad_record == "skip" ? train::BadRecordPolicy::kSkip
                                               : train::BadRecordPolicy::kFail;
  so.max_bad_records = o.max_bad_records;
  d.follow_options = so;  // --follow: each round's files, not shuffled
  so.shuffle_seed = o.data_seed;
  options.allow_empty = o.allow_empty_data;
  options.allow_empty_flag = "--allow-empty-data";
  options.schema_flag = "--schema";
  options.schema_name = o.schema.empty() ? "the training data's" : o.schema;
  // Each list: expanded, checked (Error naming the flag), and its (path, size) pairs recorded for
  // the start-up comparison: ranks that see other files would not read every record once.
  const auto open = [&](const std::vector<std::string>& specs, const char* flag, bool shuffle) {
    options.source.shuffle = shuffle;
    // Rank 0 counts the training records in the background: the ETA of its progress lines.
    options.source.count_records = rank == 0 && std::string_view(flag) == "--train";
    train::Dataset set = train::open_dataset(specs, &d.schema, options, flag);
    for (size_t i = 0; i < set.files.size(); ++i)
      d.file_list += fmt::format("{} file={} bytes={}\n", flag, set.files[i], set.sizes[i]);
    d.description += fmt::format("{}{} {} file(s), {} bytes", d.description.empty() ? "" : "; ",
                                 flag, set.files.size(), set.bytes);
    if (std::string_view(flag) == "--train") d.train_files = set.files;
    return std::move(set.source);
  };
  if (o.follow.empty()) {
    d.train = open(train, "--train", o.shuffle);
  } else {  // a mistyped path would otherwise be polled forever
    std::error_code ec;
    LOCKSTEP_CHECK(std::filesystem::is_directory(o.follow, ec),
                   "--follow {}: {}: it must be the directory new data files appear in", o.follow,
                   std::filesystem::exists(o.follow, ec) ? "is not a directory" : "does not exist");
  }
  if (!valid.empty()) d.valid = open(valid, "--valid", false);
  if (!test.empty()) d.test = open(test, "--test", false);
  return d;
}

/// The name of the model configuration in errors: the --config file, or the built-in model.
std::string config_source(const Options& o) {
  return o.config.empty() ? fmt::format("built-in model {}", o.model) : o.config;
}

std::vector<std::string> sparse_column_names(const data::Schema& schema) {
  std::vector<std::string> names;
  for (int64_t c : schema.sparse_columns()) names.push_back(schema.columns()[c].name);
  return names;
}

/// The model configuration's TOML text: the --config file's (`config_text`) or the built-in
/// model's (models::preset_config_text), with the --set overrides applied.
std::string effective_config(const Options& o, const std::string& config_text) {
  const std::string base =
      o.config.empty() ? models::preset_config_text(o.model, o.table_rows) : config_text;
  return models::apply_overrides(base, o.set, config_source(o));
}

/// The model `model_text` (effective_config) describes, for `schema`.
std::unique_ptr<models::Model<float>> make_model(const Options& o, const std::string& model_text,
                                                 const data::Schema& schema, const Context& ctx) {
  // --student-only with another kind: an error at model.kind (run() reports it for --model).
  const bool student_only = o.student_only && (!o.config.empty() || o.model == "dual");
  return models::build_model<float>(model_text, config_source(o), schema, ctx, student_only);
}

bool file_mode(const Options& o) {
  return !o.data_dir.empty() || !o.train.empty() || !o.follow.empty();
}

/// Where the best validation model is kept: --best-dir, else beside the checkpoints ("": in
/// memory only).
std::string best_dir(const Options& o) {
  if (!o.best_dir.empty()) return o.best_dir;
  return o.checkpoint_dir.empty() ? std::string() : o.checkpoint_dir + "/best";
}

/// The directories lockstep-train writes must be different ones: --save into the checkpoint
/// directory, say, would replace the checkpoints with the model.
void check_distinct_outputs(const Options& o) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> outputs;  // flag, path
  const auto add = [&](const char* flag, const std::string& path) {
    if (path.empty()) return;
    std::error_code ec;
    const fs::path abs = fs::absolute(directory_target(path), ec);
    const std::string key = (ec ? fs::path(path) : fs::weakly_canonical(abs, ec)).string();
    for (const auto& [other_flag, other] : outputs)
      LOCKSTEP_CHECK(other != key,
                     "{} and {} name the same directory '{}': each output needs its own",
                     other_flag, flag, path);
    outputs.emplace_back(flag, key);
  };
  add("--checkpoint-dir", o.checkpoint_dir);
  add("--best-dir", best_dir(o));
  add("--save", o.save);
  add("--export", o.export_dir);
  add("--export-sparse", o.export_sparse);
}

/// --follow with --export: the student bundle as EXPORT/step-<n>/ and EXPORT/LATEST (its name,
/// written atomically after the bundle), the 3 newest kept: a reader never sees a partial bundle.
void export_versioned(const Options& o, train::Trainer& trainer, const Context& ctx,
                      models::DualDnn<float>* dual, const data::Schema& schema, int rank,
                      const std::string& why) {
  static uint64_t exported_at = UINT64_MAX;
  if (!dual || o.export_dir.empty() || exported_at == trainer.step()) return;
  exported_at = trainer.step();
  trainer.vote("exporting the student", [&] {
    if (rank != 0) return;
    const std::string name = fmt::format("step-{}", trainer.step());
    dual->export_student(ctx, o.export_dir + "/" + name, sparse_column_names(schema),
                         o.export_sparse);
    write_file_atomically(o.export_dir + "/LATEST", name + "\n");
    std::vector<std::string> old;
    for (const auto& e : std::filesystem::directory_iterator(o.export_dir))
      if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0)
        old.push_back(e.path().filename().string());
    std::sort(old.begin(), old.end(), [](const std::string& a, const std::string& b) {
      return std::stoull(a.substr(5)) > std::stoull(b.substr(5));
    });
    for (size_t i = 3; i < old.size(); ++i) std::filesystem::remove_all(o.export_dir + "/" + old[i]);
    log().info("exported the student to {}/{} ({})", o.export_dir, name, why);
  });
}

/// The --follow position written into every checkpoint ("follow.txt"): the files trained before
/// the running fit ("done<TAB>path") and the files of the running fit ("round<TAB>path"). A
/// checkpoint written at the end of that fit has trained them all; one written by a stop in
/// the middle of it resumes into the same files at the same batch.
std::string follow_state(const std::set<std::string>& done, const std::vector<std::string>& round) {
  std::string text;
  for (const auto& f : done) text += "done\t" + f + "\n";
  for (const auto& f : round) text += "round\t" + f + "\n";
  return text;
}

/// Where the newest checkpoint in --checkpoint-dir left --follow (rank 0, --resume or
/// --resume-or-start): the files already trained, the files of a pass it stopped in the middle
/// of (to be trained first, resumed at its batch), and whether the checkpoint must be loaded
/// before the first round (it ended a pass: the first round's fit would call it finished).
struct FollowStart {
  std::set<std::string> done;
  std::vector<std::string> pending;
  bool preload = false;
};

FollowStart follow_start(const Options& o) {
  FollowStart s;
  const std::string path = train::latest_checkpoint(o.checkpoint_dir);
  if (path.empty()) return s;
  const train::CheckpointMeta meta = train::read_checkpoint_meta(path);
  const std::string text = train::read_checkpoint_extra(path, "follow.txt");
  const bool ended = meta.epoch >= o.epochs;
  LOCKSTEP_CHECK(ended || !text.empty(),
                 "{}: written in the middle of a pass by a run without --follow (it has no "
                 "follow.txt): --follow cannot tell which files that pass read; resume it "
                 "without --follow, or start --follow with a fresh --checkpoint-dir",
                 path);
  std::vector<std::string> round;
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    const size_t tab = line.find('\t');
    const std::string kind = line.substr(0, tab);
    LOCKSTEP_CHECK(
        tab != std::string::npos && tab + 1 < line.size() && (kind == "done" || kind == "round"),
        "{}/follow.txt:{}: expected 'done<TAB>path' or 'round<TAB>path', found '{}'", path, n,
        line);
    const std::string file = line.substr(tab + 1);
    if (kind == "done")
      s.done.insert(file);
    else
      round.push_back(file);
  }
  if (ended) {
    s.done.insert(round.begin(), round.end());
    s.preload = true;
  } else {
    s.pending = round;
  }
  return s;
}

/// --follow DIR: online training on files as they appear in DIR, oldest name first. Each round,
/// rank 0 lists the files not trained on yet and every rank learns the list (and whether any
/// rank got a stop signal) in one gather; the round trains one pass over them, read once across
/// ranks like --train. Files must appear complete: write them under a name starting with '.' or
/// '_' and rename them (such names are skipped). A file whose name ends in ".day" is a day
/// marker, not data: the files before it (by name) are trained, then the feasign store's boundary
/// runs (Trainer::boundary: sparse base, shrink), then the files after it. With --export-sparse
/// a base is also written at the end. Stops on SIGTERM/SIGINT (after the same step on
/// every rank, with a checkpoint when --checkpoint-dir is set) or after --follow-idle-exit
/// seconds without a new file. With --resume/--resume-or-start it goes on where the newest
/// checkpoint left it (follow.txt): no file trained twice, none skipped.
train::FitResult follow(const Options& o, Data& d, train::Trainer& trainer,
                        comm::Communicator& comm, Context& ctx, train::BatchSource* held_out,
                        const std::function<void(const std::string&)>& export_now) {
  namespace fs = std::filesystem;
  train::HostCollectives host(comm, ctx);
  train::SignalGuard signals(true);  // between rounds too; fit() inside keeps a pending signal
  std::set<std::string> done;
  std::vector<std::string> pending;  // a pass a checkpoint stopped in: the first round
  if (o.resume || o.resume_or_start) {
    FollowStart start;
    trainer.vote("reading where --follow stopped", [&] {
      if (comm.rank() == 0) start = follow_start(o);
    });
    done = start.done;
    pending = start.pending;
    const auto flags = host.all_gather_text(start.preload ? "preload" : "-", std::string::npos);
    if (flags[0] == "preload") {  // load the model the last round left (no training here)
      if (comm.rank() == 0) log().info("--follow: resuming after {} file(s) trained", done.size());
      train::VectorBatchSource none({});
      trainer.fit(none);
    } else if (comm.rank() == 0 && !pending.empty()) {
      log().info("--follow: resuming in the middle of {} file(s), {} ... {}", pending.size(),
                 pending.front(), pending.back());
    }
  }
  train::FitResult total;
  auto last_new = std::chrono::steady_clock::now();
  int64_t files_since_export = 0;
  while (true) {
    std::string msg = train::stop_signal_pending() ? "stop\n" : "go\n";
    if (comm.rank() == 0 && !pending.empty()) {
      for (const auto& f : pending) msg += f + "\n";  // the interrupted pass, exactly
    } else if (comm.rank() == 0) {
      std::vector<std::string> fresh;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(o.follow, ec)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.' || name[0] == '_' || !e.is_regular_file()) continue;
        if (!done.count(e.path().string())) fresh.push_back(e.path().string());
      }
      std::sort(fresh.begin(), fresh.end());
      const double idle =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - last_new).count();
      if (fresh.empty() && o.follow_idle_exit > 0 && idle > o.follow_idle_exit) msg += "idle\n";
      for (const auto& f : fresh) msg += f + "\n";
    }
    const auto all = host.all_gather_text(msg, std::string::npos);
    bool stop = false;
    for (const auto& m : all) stop = stop || m.rfind("stop", 0) == 0;
    std::vector<std::string> files;
    bool idle = false;
    std::istringstream lines(all[0]);
    std::string line;
    std::getline(lines, line);  // rank 0's stop flag
    while (std::getline(lines, line)) {
      if (line == "idle") idle = true;
      else if (!line.empty()) files.push_back(line);
    }
    if (stop) {
      if (comm.rank() == 0) log().warn("--follow: stop requested by a signal");
      total.stopped = true;
      break;
    }
    if (idle) {
      if (comm.rank() == 0)
        log().info("--follow: no new file in {} for {} s: stopping", o.follow, o.follow_idle_exit);
      break;
    }
    if (files.empty()) {
      std::this_thread::sleep_for(std::chrono::duration<double>(o.follow_poll));
      continue;
    }
    last_new = std::chrono::steady_clock::now();
    pending.clear();
    // Day markers (names ending in ".day", not data) split the round: the files before a marker
    // are trained, then the boundary (sparse base, shrink) runs on every rank, then the rest.
    std::vector<std::vector<std::string>> segments(1);
    std::vector<std::string> markers;
    for (const auto& f : files) {
      if (f.size() > 4 && f.compare(f.size() - 4, 4, ".day") == 0) {
        markers.push_back(f);
        segments.emplace_back();
      } else {
        segments.back().push_back(f);
      }
    }
    bool stopped = false;
    for (size_t i = 0; i < segments.size() && !stopped; ++i) {
      const auto& part = segments[i];
      if (!part.empty()) {
        std::unique_ptr<train::TextBatchSource> source;
        trainer.vote("opening new files", [&] {
          source = std::make_unique<train::TextBatchSource>(part, d.schema, d.follow_options);
        });
        trainer.set_checkpoint_extra("follow.txt", follow_state(done, part));
        if (comm.rank() == 0)
          log().info("--follow: training on {} new file(s), {} ... {}", part.size(),
                     part.front(), part.back());
        const train::FitResult r = trainer.fit(*source);
        total.steps += r.steps;
        total.updates += r.updates;
        total.samples += r.samples;
        total.loss_sum += r.loss_sum;
        total.seconds += r.seconds;
        total.train_seconds += r.train_seconds;
        total.data_wait_seconds += r.data_wait_seconds;
        if (!r.last_checkpoint.empty()) total.last_checkpoint = r.last_checkpoint;
        stopped = r.stopped;
        if (!stopped) done.insert(part.begin(), part.end());
      }
      if (i < markers.size() && !stopped) {
        if (comm.rank() == 0) log().info("--follow: day marker {}: a boundary", markers[i]);
        trainer.boundary();
        done.insert(markers[i]);
      }
    }
    last_new = std::chrono::steady_clock::now();  // idle time counts from the end of a round
    if (stopped) {
      if (comm.rank() == 0) log().warn("--follow: stop requested by a signal");
      total.stopped = true;
      break;
    }
    files_since_export += static_cast<int64_t>(files.size() - markers.size());
    if (o.export_every_files > 0 && files_since_export >= o.export_every_files) {
      export_now(fmt::format("after {} file(s)", done.size()));
      files_since_export = 0;
    }
  }
  if (!total.stopped && held_out) total.last_eval = trainer.evaluate(*held_out);
  export_now("at the end of --follow");
  if (!o.export_sparse.empty()) trainer.save_sparse_base();  // the served model is current
  return total;
}

/// Logs, per hashed table, how many distinct keys of the first records of the training files
/// share a row (rank 0, before training; docs/data.md "Collisions").
void report_collisions(const Data& d, models::Model<float>& model, int64_t sample_records) {
  auto* m = dynamic_cast<models::EmbeddingModel<float>*>(&model);
  if (!m || d.train_files.empty() || sample_records <= 0) return;
  const auto columns = sparse_column_names(d.schema);
  std::vector<train::TableCollisions> counts;
  int64_t sampled = 0;
  // A cache's stored vocabularies: exact counts over all the data.
  if (auto* cache = dynamic_cast<train::CacheBatchSource*>(d.train.get())) {
    std::vector<std::vector<uint64_t>> vocab(columns.size());
    bool all = true;
    for (size_t s = 0; s < columns.size() && all; ++s)
      all = cache->vocabulary(static_cast<int64_t>(s), vocab[s]);
    if (all) counts = train::count_collisions(*m, columns, vocab, true);
  }
  if (counts.empty()) {  // else the keys of the first records
    train::FileSourceOptions o;
    o.batch_size = sample_records;
    o.workers = 0;
    o.on_bad_record = train::BadRecordPolicy::kSkip;  // the training pass reports them
    std::unique_ptr<train::BatchSource> sample;
    if (train::is_cache_file(d.train_files.front()))
      sample = std::make_unique<train::CacheBatchSource>(d.train_files, o);
    else
      sample = std::make_unique<train::TextBatchSource>(d.train_files, d.schema, o);
    sample->start_epoch(0);
    data::Batch b, more;
    if (!sample->next(b)) return;
    const bool all = !sample->next(more);  // the sample is every training record
    counts = train::count_collisions(*m, columns, train::keys_by_column(b), all);
    sampled = b.size;
  }
  for (const auto& line : counts)
    log().info("collisions: {}", train::describe_collisions({line}, sampled));
}

/// Everything that must be equal on all ranks, compared by the trainer at start-up: "key=value"
/// lines, so that a difference is named (the model configuration line by line).
std::string run_signature(const Options& o, const std::string& config_text) {
  std::string s = fmt::format("--data={}\n--synthetic={}\n--data-seed={}\n--train-samples={}\n"
                              "--test-samples={}\n--batch-size={}\n--table-rows={}\n--model={}\n"
                              "--student-only={}\n--schema={}\n--shuffle={}\n--on-bad-record={}\n"
                              "--max-bad-records={}\n",
                              o.data_dir, o.synthetic, o.data_seed, o.train_samples,
                              o.test_samples, o.batch_size, o.table_rows, o.model, o.student_only,
                              o.schema, o.shuffle, o.on_bad_record, o.max_bad_records);
  for (const auto& set : o.set) s += fmt::format("--set={}\n", set);
  size_t at = 0;
  for (int line = 1; at < config_text.size(); ++line) {
    const size_t end = std::min(config_text.find('\n', at), config_text.size());
    s += fmt::format("--config line {}={}\n", line, config_text.substr(at, end - at));
    at = end + 1;
  }
  return s;
}

/// Exit codes (train::ExitCode): 0 success; 1 an error in the input, configuration or data, or a
/// failure that every rank reported (lockstep::Error); 3 a communication fault (a rank died or
/// hung); 4 a device fault; 70 an internal error (any other exception).
using train::kExitError;
using train::kExitInternal;

/// Loads data and model, trains, evaluates, exports: everything after the communicator exists.
int train(const Options& o, Context& ctx, comm::Communicator& comm);

/// Sets up the device and the communicator, then trains; see train().
int run(const Options& o) {
  set_log_level(o.log_level);
  const auto [local_rank, local_size] = comm::launcher_local_rank();
  const Device device = select_device(o.device, local_rank);
  // Ranks sharing a node share its cores: by default each gets its part for OpenBLAS.
  const int threads = o.threads > 0 || local_size <= 1
                          ? o.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_size);
  ContextOptions context_options{o.allow_tf32, threads, o.data_seed, o.allow_bf16};
  context_options.cuda_graphs = !o.no_cuda_graphs;
  Context ctx(device, context_options);
  comm::CommOptions comm_options;
  comm_options.timeout_s = o.comm_timeout;
  comm_options.startup_timeout_s = o.startup_timeout;
  auto comm = comm::create_communicator(o.comm, device, comm_options);
  try {
    return train(o, ctx, *comm);
  } catch (const std::exception& e) {
    // An error every rank raised together (a vote) unwinds normally. Any other is printed at
    // once by the rank that failed; it would leave the others waiting in their next collective
    // (and this rank blocked in MPI_Finalize while unwinding): the job is aborted instead, so
    // every rank exits within seconds.
    if (comm->size() == 1 || train::raised_on_every_rank(e)) throw;
    train::abort_job(*comm, e);
  }
}

int train(const Options& o, Context& ctx, comm::Communicator& comm) {
  const Device device = ctx.device();
  const int rank = comm.rank(), ranks = comm.size();
  if (ranks > 1) {
    set_log_rank(rank);
    if (rank != 0 && o.log_level == "info") set_log_level("warn");  // one voice: rank 0
  }
  Data d;
  std::string config_text;
  std::string model_text;  // the configuration the model is built from (saved with it)
  std::unique_ptr<models::Model<float>> model;
  models::DualDnn<float>* dual = nullptr;
  // Each rank reads its own files (data, schema, configuration, checkpoint): any of them can fail
  // on one rank only, so the set-up ends in a vote and every rank raises the same error.
  train::agree(comm, ctx, "set-up", [&] {
    d = file_mode(o) ? file_data(o, rank, ranks) : synthetic_data(o, rank, ranks);
    LOCKSTEP_CHECK(o.early_stop == 0 || d.valid,
                   "--early-stop needs validation data (--valid): stopping on the test data would "
                   "make its score optimistic");
    if (!o.config.empty()) {
      std::ifstream in(o.config);
      LOCKSTEP_CHECK(in.good(), "{}: cannot read the model configuration", o.config);
      config_text.assign(std::istreambuf_iterator<char>(in), {});
    }
    model_text = effective_config(o, config_text);
    model = make_model(o, model_text, d.schema, ctx);
    dual = dynamic_cast<models::DualDnn<float>*>(model.get());
    LOCKSTEP_CHECK(!o.student_only || dual, "--student-only needs the dual model (--model dual)");
    LOCKSTEP_CHECK(o.export_dir.empty() || dual, "--export writes a student bundle: it needs the "
                   "dual model (--model dual or a config of kind dual)");
    if (!o.init_from.empty()) {  // warm start: parameters, optimizer and table state
      const auto meta =
          train::read_checkpoint(train::resolve_checkpoint_path(o.init_from), *model, ctx, 0);
      log().info("warm start from {} (step {})", o.init_from, meta.step);
    }
    if (rank == 0) {  // rank 0 writes these at the end: check them before a long run
      if (!o.save.empty()) {
        probe_writable_parent(o.save, "the directory of --save");
        check_replaceable_directory(o.save, "--save");
      }
      if (!o.export_dir.empty()) {
        probe_writable_parent(o.export_dir, "the directory of --export");
        // With --follow it is a directory of versions (step-<n>/, LATEST), each checked as written.
        if (o.follow.empty()) check_replaceable_directory(o.export_dir, "--export");
      }
      check_distinct_outputs(o);
    }
  });
  log().info("data: {}{}",
             o.follow.empty() ? "" : fmt::format("--follow {} (files as they appear)", o.follow),
             o.follow.empty() || d.description.empty() ? d.description : "; " + d.description);
  if (rank == 0) {
    // Informational, and outside any vote: a failure here must not end the job from rank 0
    // alone (the data's own errors reach every rank from the ranks that read it).
    try {
      report_collisions(d, *model, o.collision_sample);
    } catch (const Error& e) {
      log().warn("hash collisions not estimated: {}", e.what());
    }
  }
  log().info("model: {} with {} tables and {} dense parameters; {} rank(s), communicator {}, "
             "device {}",
             model->name(), model->tables().size(), model->dense_params().trainable_size(), ranks,
             comm.backend(), device.str());

  train::TrainerConfig tc;
  tc.epochs = o.epochs;
  tc.log_every = o.log_every;
  if (!file_mode(o))  // synthetic: ceil(samples / (batch × ranks)) steps per epoch
    tc.steps_per_epoch = (o.train_samples + o.batch_size * ranks - 1) / (o.batch_size * ranks);
  tc.metrics_path = o.metrics;
  tc.checkpoint_dir = o.checkpoint_dir;
  tc.checkpoint_every = o.checkpoint_every;
  tc.keep_checkpoints = o.keep_checkpoints;
  tc.sparse_export_dir = o.export_sparse;
  tc.sparse_delta_every = o.sparse_delta_every;
  tc.profile = o.profile;
  tc.all_reduce_bucket_mb = o.bucket_mb;
  tc.epoch_boundaries = o.follow.empty();  // --follow: day markers are the boundaries
  // Model selection on the validation data: best/ kept beside the checkpoints (or --best-dir),
  // early stopping; without --valid the test data is evaluated each epoch for monitoring only.
  tc.eval_every = o.eval_every;
  tc.select_metric = o.select_metric;
  if (d.valid) {
    tc.early_stop_patience = o.early_stop;
    tc.best_dir = best_dir(o);
    // No directory for it: the best model's state stays in memory (restored, never written).
    tc.keep_best_in_memory = tc.best_dir.empty();
  } else {
    tc.eval_split = "test";
  }
  tc.model_files = train::model_files(model_text, d.schema);
  tc.resume = o.resume;
  tc.resume_or_start = o.resume_or_start;
  tc.run_config = run_signature(o, config_text) + d.file_list;
  tc.handle_signals = true;  // SIGTERM/SIGINT: stop every rank after the same step, checkpoint
  tc.abort_on_error = true;  // an error on one rank only ends the whole job at once
  train::testing::FaultScope fault(o.inject_fault);  // in-tree test hook, not installed
  train::Trainer trainer(*model, comm, ctx, tc);
  // Evaluation each epoch (and every --eval-every steps) on the validation data, which selects
  // the best model; without validation data, the test data is evaluated each epoch to monitor.
  train::BatchSource* held_out = d.valid ? d.valid.get() : d.test.get();
  const train::FitResult r =
      o.follow.empty() ? trainer.fit(*d.train, held_out)
                       : follow(o, d, trainer, comm, ctx, held_out, [&](const std::string& why) {
                           export_versioned(o, trainer, ctx, dual, d.schema, rank, why);
                         });
  // Data with bytes but no usable record (a header only; every record skipped as bad) trained
  // nothing: an error (the same on every rank: the sample count is global), not a model to save.
  LOCKSTEP_CHECK(
      r.samples > 0 || r.stopped || r.already_finished || o.allow_empty_data || !o.follow.empty(),
      "trained on 0 samples: the training data holds no usable record{}; pass "
      "--allow-empty-data to run on it anyway",
      o.on_bad_record == "skip" ? " (bad records skipped: see the report above)" : "");
  // A student bundle with --export-sparse references the newest sparse base: one of the model as
  // it is now (the epoch's base came before its shrink, and a restored best model is older), so
  // that the served student's MLP and its tables are the same model's.
  if (dual && !o.export_dir.empty() && o.follow.empty() && !o.export_sparse.empty())
    trainer.save_sparse_base();
  // Rank 0 writes the outputs (before the test data is read: a bad test record cannot lose
  // the trained model); every rank learns whether that worked.
  trainer.vote("writing the outputs", [&] {
    if (rank != 0) return;
    if (dual && !o.export_dir.empty() && o.follow.empty()) {  // --follow exported already
      dual->export_student(ctx, o.export_dir, sparse_column_names(d.schema), o.export_sparse);
      std::printf("exported the student to %s\n", o.export_dir.c_str());
    }
    if (!o.save.empty()) {  // a complete model: parameters, tables, model.toml, schema.toml
      train::CheckpointMeta meta;
      // The restored best model is the one of its step (what lockstep-eval --model reports).
      meta.step = r.restored_best ? r.best_step : trainer.step();
      meta.updates = trainer.updates();
      meta.epoch = o.epochs;
      meta.ranks = ranks;
      meta.config_hash = trainer.config_hash();
      meta.model = model->name();
      train::write_checkpoint_directory(o.save, meta, *model, ctx,
                                        train::model_files(model_text, d.schema));
      log().info("saved the model to {} (lockstep-eval --model {})", o.save, o.save);
    }
  });
  // The test data once at the end (with the best parameters when a best model was kept).
  train::EvalResult test;
  if (!r.stopped && d.valid && d.test) test = trainer.evaluate(*d.test, "test");
  // What the result line reports: validation (the best evaluation when it was restored) and
  // test; or the last evaluation of the held-out data.
  const train::EvalResult& valid_eval = r.restored_best ? r.best_eval : r.last_eval;
  const train::EvalResult& final_eval = d.valid ? (d.test ? test : valid_eval) : r.last_eval;
  std::string evaluated = fmt::format("AUC {:.4f}", final_eval.auc);
  if (d.valid)
    evaluated = fmt::format(
        "validation AUC {:.4f}{}{}", valid_eval.auc,
        r.restored_best ? fmt::format(" (best: step {}, epoch {})", r.best_step, r.best_epoch)
                        : std::string(),
        d.test ? fmt::format(", test AUC {:.4f}", test.auc) : std::string());
  const train::BinaryMetrics* teacher = final_eval.output("teacher");
  const double teacher_auc = teacher ? teacher->auc : NAN;
  if (rank == 0) {
    const double per_s = r.samples / std::max(r.train_seconds, 1e-9);
    const double final_auc = final_eval.auc;
    if (r.stopped)
      std::printf("stopped at step %llu by a signal%s%s\n",
                  static_cast<unsigned long long>(trainer.step()),
                  r.last_checkpoint.empty() ? "" : "; checkpoint ", r.last_checkpoint.c_str());
    else if (!held_out)
      std::printf("%s\n", fmt::format("result: trained {} samples (no held-out data to evaluate); "
                                       "{:.0f} samples/s on {} rank(s)",
                                       r.samples, per_s, ranks).c_str());
    else
      std::printf("%s\n",
                  fmt::format("result: {}{}{}; {:.0f} samples/s on {} rank(s) ({}, {}), "
                              "batch {} per rank",
                              evaluated,
                              // data without a known click model has no oracle to compare with
                              std::isnan(d.oracle_auc)
                                  ? std::string()
                                  : fmt::format(" vs oracle AUC {:.4f} (gap {:.4f})", d.oracle_auc,
                                                d.oracle_auc - final_auc),
                              dual ? fmt::format(" [student]; teacher AUC {:.4f}", teacher_auc)
                                   : std::string(),
                              per_s, ranks, device.str(), comm.backend(), o.batch_size)
                      .c_str());
    std::fflush(stdout);
  }
  // Replicas must be bitwise identical: every rank's state hash, compared on rank 0 (collective).
  const auto hashes = trainer.replica_hashes();
  const bool same = std::all_of(hashes.begin(), hashes.end(),
                                [&](uint64_t h) { return h == hashes[0]; });
  if (rank == 0) {
    if (same)
      log().info("replica state hash {:016x}, identical on all {} rank(s)", hashes[0], ranks);
    else
      log().error("replicas DIFFER: state hashes {:016x} (rank 0 first)", fmt::join(hashes, ", "));
  }
  return same ? 0 : kExitInternal;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep-train: lockstep data-parallel training of embedding + MLP on CTR data (run it under mpirun for several ranks)"};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.option_defaults()->always_capture_default();  // --help shows every default
  Options o;
  app.add_option("--config", o.config, "model TOML (docs/configuration.md); default: built in")
      ->check(CLI::ExistingFile);
  auto* data_opt = app.add_option("--data", o.data_dir, "directory written by lockstep-datagen")
                       ->check(CLI::ExistingDirectory);
  auto* train_opt =
      app.add_option("--train", o.train,
                     "training data: files, directories or globs (with --schema; docs/data.md)");
  app.add_option("--valid", o.valid,
                 "validation data (files, directories, globs): evaluated every epoch");
  app.add_option("--test", o.test,
                 "test data (files, directories, globs): evaluated every epoch when there is no "
                 "--valid, else once at the end");
  app.add_option("--schema", o.schema, "schema TOML of the data files, or a preset: criteo");
  app.add_option("--on-bad-record", o.on_bad_record,
                 "a record that does not parse: fail (stop with file:line) or skip (count it)")
      ->check(CLI::IsMember({"fail", "skip"}));
  app.add_option("--max-bad-records", o.max_bad_records,
                 "with --on-bad-record skip: stop when a rank skips more than this many in an "
                 "epoch")
      ->check(CLI::Range(int64_t{0}, INT64_MAX));
  app.add_option("--data-workers", o.data_workers,
                 "threads per rank decoding data files ahead of training (0: in the training "
                 "thread)")
      ->check(CLI::Range(0, 64));
  app.add_option("--collision-sample", o.collision_sample,
                 "records of the training files whose keys are counted per table at start-up to "
                 "report hash collisions (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--follow", o.follow,
                 "online: train on files as they appear in this directory (name order), one pass "
                 "each, until SIGTERM or --follow-idle-exit; --export writes EXPORT/step-<n>/ + "
                 "EXPORT/LATEST")
      ->excludes(train_opt);
  app.add_option("--follow-poll", o.follow_poll, "--follow: seconds between directory listings")
      ->check(CLI::Range(0.01, 3600.0));
  app.add_option("--follow-idle-exit", o.follow_idle_exit,
                 "--follow: stop after this many seconds without a new file (0: never)")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--export-every-files", o.export_every_files,
                 "--follow: export the student after every N files trained (0: only at the end)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_flag("--shuffle", o.shuffle,
               "shuffle the training files' records every epoch (by chunk and within a window; "
               "seeded by --data-seed)");
  app.add_option("--synthetic", o.synthetic, "generate data in memory from a preset")
      ->check(CLI::IsMember({"demo", "din-bench"}))
      ->excludes(data_opt)
      ->excludes(train_opt);
  app.add_option("--train-samples", o.train_samples, "synthetic training samples")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--test-samples", o.test_samples, "synthetic held-out samples")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 32));
  app.add_option("--data-seed", o.data_seed, "seed of the synthetic data");
  app.add_option("--batch-size", o.batch_size, "samples per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--epochs", o.epochs, "passes over the training data")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  app.add_option("--model", o.model, "built-in model when no --config is given")
      ->check(CLI::IsMember({"embedding_mlp", "din", "bst", "dual"}));
  app.add_option("--set", o.set,
                 "KEY=VALUE: override a key of the model configuration (--config or the built-in "
                 "model), e.g. --set model.mlp.widths=[64,1] --set optimizer.lr=0.01; repeatable; "
                 "VALUE is TOML (docs/configuration.md)")
      ->allow_extra_args(false);
  app.add_option("--table-rows", o.table_rows, "hash buckets per table of the built-in model")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32));
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N (under mpirun: one per local rank)");
  app.add_option("--comm", o.comm, "auto, local, mpi or nccl (docs/communication.md)");
  app.add_option("--comm-timeout", o.comm_timeout, "seconds a rank waits for the others")
      ->check(CLI::Range(0.1, 1e6));
  app.add_option("--startup-timeout", o.startup_timeout,
                 "seconds a rank waits for the others during set-up and the first step (loading "
                 "data and model)")
      ->check(CLI::Range(0.1, 1e6));
  app.add_flag("--allow-tf32", o.allow_tf32, "allow TF32 tensor-core GEMMs on CUDA");
  app.add_flag("--allow-bf16", o.allow_bf16,
               "allow bf16 tensor-core GEMMs on CUDA (fp32 accumulation; docs/training.md)");
  app.add_flag(
      "--no-cuda-graphs", o.no_cuda_graphs,
      "launch every kernel of the step instead of replaying CUDA graphs (docs/performance.md)");
  app.add_flag("--allow-empty-data", o.allow_empty_data,
               "accept empty training or held-out files (--data) instead of stopping");
  app.add_option("--threads", o.threads,
                 "CPU threads for OpenBLAS per rank (0: cores / ranks on this node)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--log-every", o.log_every, "progress line every N steps (0 = per epoch)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--checkpoint-dir", o.checkpoint_dir,
                 "write checkpoints here (and the best validation model as DIR/best)");
  app.add_option("--eval-every", o.eval_every,
                 "evaluate the validation data every N steps too (0: after each epoch only)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--early-stop", o.early_stop,
                 "stop after PATIENCE evaluations of --valid without improving on the best (0: "
                 "never)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--select-metric", o.select_metric,
                 "validation metric choosing the best model and driving --early-stop")
      ->check(CLI::IsMember({"auc", "logloss"}));
  app.add_option("--best-dir", o.best_dir,
                 "keep the best validation model here (default: CHECKPOINT_DIR/best, else in "
                 "memory); --test and --save then use it");
  app.add_option("--keep-checkpoints", o.keep_checkpoints,
                 "checkpoints kept in --checkpoint-dir (older ones are removed)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--checkpoint-every", o.checkpoint_every, "checkpoint every N steps (0 = at the end)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--export-sparse", o.export_sparse,
                 "dynamic tables: write base/delta exports here (a base at every epoch's end; "
                 "docs/feasign_store.md); lockstep-data sparse DIR reads them");
  app.add_option("--sparse-delta-every", o.sparse_delta_every,
                 "with --export-sparse: a delta every N steps (0 = none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--all-reduce-bucket-mb", o.bucket_mb,
                 "with several ranks, sum the dense gradients in buckets of this many MiB "
                 "started during the backward (0: one all-reduce after it; same results)")
      ->check(CLI::Range(0.0, 1048576.0));
  app.add_flag("--profile", o.profile,
               "log where the training steps' time goes at the end (phases and kernels, rank 0; "
               "docs/performance.md)");
  auto* resume_flag =
      app.add_flag("--resume", o.resume,
                   "resume from the newest checkpoint in --checkpoint-dir (an error when there is none)");
  app.add_flag("--resume-or-start", o.resume_or_start,
               "resume from the newest checkpoint in --checkpoint-dir, or start from the beginning "
               "when there is none")
      ->excludes(resume_flag);
  app.add_option("--save", o.save,
                 "write the complete model (parameters, tables, model.toml, schema.toml) into this "
                 "directory at the end: lockstep-eval --model DIR");
  app.add_option("--export", o.export_dir, "dual model: write the student serving bundle here");
  app.add_flag("--student-only", o.student_only,
               "dual model: train only the student (teacher and embeddings frozen); use with "
               "--init-from");
  app.add_option("--init-from", o.init_from,
                 "warm start: load parameters and optimizer state from this checkpoint (a step-<n> "
                 "directory, best/, or a checkpoint root: its LATEST)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--metrics", o.metrics, "append JSON lines of progress and evaluations here");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error");
  app.add_option("--inject-fault", o.inject_fault,
                 "for tests: kind:rank:step[:seconds], kind = skew, fail, sleep, kill, sigterm, "
                 "error, device");
  CLI11_PARSE(app, argc, argv);
  if (o.max_bad_records != INT64_MAX && o.on_bad_record != "skip") {
    log().error(
        "--max-bad-records bounds the records --on-bad-record skip drops: add "
        "--on-bad-record skip (with fail, the first bad record stops the run)");
    return kExitError;
  }
  try {
    return run(o);
  } catch (const Error& e) {
    log().error("{}", e.what());
    return kExitError;
  } catch (const std::exception& e) {
    log().error("internal error: {}", e.what());
    return kExitInternal;
  }
}

// lockstep-data: data preparation tools, one subcommand each.
//
//   lockstep-data movielens --ratings ml/ratings.csv --movies ml/movies.csv --out data/ml
//   lockstep-data convert --schema schema.toml --out train.cache 'data/train/*.csv'
//   lockstep-data sparse run/sparse --table user --key 42
//
// movielens: MovieLens ratings → behaviour-sequence CTR records (schema.toml, train.tsv,
// valid.tsv, test.tsv, movielens.json) that `lockstep-train --data DIR` reads; see
// docs/movielens.md.
//
// convert: text records in any format of a schema (tsv, csv, libsvm, libfm; docs/data.md) → one
// binary cache file (docs/data_cache.md) that `lockstep-train --train` reads memory-mapped.
//
// sparse: a base/delta export of dynamic tables (`lockstep-train --export-sparse DIR`) loaded as
// a serving side would load it (docs/feasign_store.md): its tables, or the values of some keys.
//
// A subcommand is a function that registers its options and its action on the app
// (add_<name>_command); main only parses and reports errors.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/data/cache.h"
#include "lockstep/data/data_files.h"
#include "lockstep/data/movielens.h"
#include "lockstep/train/batch_source.h"
#include "lockstep/train/sparse_model.h"

namespace {

using lockstep::data::MovieLensOptions;

/// `lockstep-data movielens`: converts ratings.csv + movies.csv into a lockstep data directory.
void add_movielens_command(CLI::App& app) {
  struct Args {
    std::string ratings, movies, out, history = "liked", split = "user", train_order = "shuffled";
    MovieLensOptions options;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "movielens",
      "MovieLens ratings → behaviour-sequence CTR records: a record per rating, label rating >= "
      "threshold, history = the user's earlier movies (docs/movielens.md)");
  cmd->option_defaults()->always_capture_default();
  cmd->add_option("--ratings", args->ratings, "ratings.csv (userId,movieId,rating,timestamp)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--movies", args->movies, "movies.csv (movieId,title,genres)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output directory (created if missing)")->required();
  cmd->add_option("--click-threshold", args->options.click_threshold,
                  "a rating >= this is a click (label 1)")
      ->check(CLI::Range(-1e9, 1e9));
  cmd->add_option("--max-len", args->options.max_len, "history length kept (the most recent)")
      ->check(CLI::Range(int64_t{1}, lockstep::data::kMaxSequenceLength));
  cmd->add_option("--history", args->history,
                  "which earlier ratings form the history: all, or liked (>= threshold)")
      ->check(CLI::IsMember({"all", "liked"}));
  cmd->add_option("--split", args->split,
                  "user: each user's last ratings are valid/test; global: the last ratings in "
                  "time over all users; new-users: whole users (seeded) are valid/test")
      ->check(CLI::IsMember({"user", "global", "new-users"}));
  cmd->add_option("--valid-fraction", args->options.valid_fraction, "fraction of ratings in valid")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--test-fraction", args->options.test_fraction, "fraction of ratings in test")
      ->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--train-order", args->train_order,
                  "order of train.tsv: shuffled (seeded) or time")
      ->check(CLI::IsMember({"shuffled", "time"}));
  cmd->add_option("--seed", args->options.seed,
                  "seed of the train.tsv shuffle and of the new-users choice");
  cmd->callback([args] {
    MovieLensOptions o = args->options;
    o.history = lockstep::data::parse_movielens_history(args->history);
    o.split = lockstep::data::parse_movielens_split(args->split);
    o.shuffle_train = args->train_order == "shuffled";
    const auto start = std::chrono::steady_clock::now();
    const auto s = lockstep::data::convert_movielens(args->ratings, args->movies, args->out, o);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "wrote %s in %.1f s: %lld ratings of %lld users on %lld movies (%lld listed, "
        "%lld genres); history %s, max_len %lld, split %s\n",
        args->out.c_str(), seconds, static_cast<long long>(s.ratings),
        static_cast<long long>(s.users), static_cast<long long>(s.rated_movies),
        static_cast<long long>(s.movies), static_cast<long long>(s.genres), args->history.c_str(),
        static_cast<long long>(o.max_len), args->split.c_str());
    const char* names[3] = {"train", "valid", "test"};
    for (int k = 0; k < 3; ++k)
      std::printf("  %-5s %8lld records, click rate %.4f, mean history %.1f\n", names[k],
                  static_cast<long long>(s.records[k]), s.click_rate(k), s.mean_history[k]);
  });
}

/// `lockstep-data convert`: text files → one binary cache (every record once, in file order).
void add_convert_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> inputs;
    std::string schema, out, on_bad_record = "fail";
    int64_t max_bad_records = INT64_MAX, block_records = 65536, max_vocabulary = int64_t{1} << 24;
    int zstd_level = 1, workers = 1;
    bool no_vocabulary = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "text records (tsv, csv, libsvm, libfm: the schema's [format]) → a binary cache that "
      "lockstep-train reads memory-mapped (docs/data_cache.md)");
  cmd->option_defaults()->always_capture_default();
  cmd->add_option("inputs", args->inputs, "text files, directories or globs")->required();
  cmd->add_option("--schema", args->schema, "schema TOML of the text files, or a preset: criteo")
      ->required();
  cmd->add_option("--out", args->out, "the cache file to write (atomically)")->required();
  cmd->add_option("--on-bad-record", args->on_bad_record,
                  "a record that does not parse: fail (file:line) or skip (counted)")
      ->check(CLI::IsMember({"fail", "skip"}));
  cmd->add_option("--max-bad-records", args->max_bad_records, "with skip: at most this many")
      ->check(CLI::Range(int64_t{0}, INT64_MAX));
  cmd->add_option("--block-records", args->block_records, "records per block")
      ->check(CLI::Range(int64_t{1}, lockstep::data::kMaxCacheBlockRecords));
  cmd->add_option("--zstd-level", args->zstd_level, "zstd level of the blocks")
      ->check(CLI::Range(1, 19));
  cmd->add_option("--max-vocabulary", args->max_vocabulary,
                  "distinct ids per column counted exactly and stored (more: estimated)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 31));
  cmd->add_flag("--no-vocabulary", args->no_vocabulary, "store no vocabularies (counts only)");
  cmd->add_option("--workers", args->workers, "parsing threads")->check(CLI::Range(0, 64));
  cmd->callback([args] {
    namespace data = lockstep::data;
    namespace train = lockstep::train;
    const auto start = std::chrono::steady_clock::now();
    LOCKSTEP_CHECK(args->max_bad_records == INT64_MAX || args->on_bad_record == "skip",
                   "--max-bad-records bounds the records --on-bad-record skip drops: add "
                   "--on-bad-record skip (with fail, the first bad record stops the conversion)");
    const auto files = data::expand_data_paths(args->inputs, "lockstep-data convert");
    const data::Schema schema = data::Schema::load_or_preset(args->schema);
    // An unquoted glob, say: --out g/*.csv gives --out g/a.csv g/b.csv.
    for (const auto& f : files) {
      std::error_code ec;
      LOCKSTEP_CHECK(!std::filesystem::equivalent(f, args->out, ec),
                     "--out {}: is one of the input files; write the cache elsewhere (quote a "
                     "glob so that the shell does not expand it)",
                     args->out);
    }
    train::FileSourceOptions so;
    so.batch_size = 65536;
    so.workers = args->workers;
    so.on_bad_record = args->on_bad_record == "skip" ? train::BadRecordPolicy::kSkip
                                                     : train::BadRecordPolicy::kFail;
    so.max_bad_records = args->max_bad_records;
    train::TextBatchSource source(files, schema, so);
    data::CacheWriterOptions co;
    co.block_records = args->block_records;
    co.zstd_level = args->zstd_level;
    co.store_vocabulary = !args->no_vocabulary;
    co.max_vocabulary = args->max_vocabulary;
    co.source = fmt::format("lockstep-data convert: {} file(s): {}{}", files.size(), files.front(),
                            files.size() > 1 ? " ..." : "");
    data::CacheWriter writer(args->out, schema, co);
    source.start_epoch(0);
    data::Batch batch;
    while (source.next(batch)) writer.append(batch);
    const data::CacheInfo info = writer.finish();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %s: %lld records from %zu file(s) in %.1f s (%.0f records/s); %lld bytes "
                "(%.1f bytes/record, %.2fx smaller than decoded)\n",
                args->out.c_str(), static_cast<long long>(info.records), files.size(), seconds,
                static_cast<double>(info.records) / std::max(seconds, 1e-9),
                static_cast<long long>(info.file_bytes),
                static_cast<double>(info.file_bytes) / std::max<double>(1, info.records),
                static_cast<double>(info.decoded_bytes) / std::max<double>(1, info.file_bytes));
    for (int64_t s = 0; s < schema.num_sparse(); ++s) {
      const auto& st = info.sparse_stats[static_cast<size_t>(s)];
      std::printf("  %-20s %lld ids, %lld distinct%s, ids in [%llu, %llu], at most %lld per "
                  "record\n",
                  schema.columns()[schema.sparse_columns()[s]].name.c_str(),
                  static_cast<long long>(st.ids), static_cast<long long>(st.distinct),
                  st.distinct_exact ? "" : " (estimated)",
                  static_cast<unsigned long long>(st.min_id),
                  static_cast<unsigned long long>(st.max_id),
                  static_cast<long long>(st.max_length));
    }
    if (const std::string report = source.epoch_report(); !report.empty())
      std::printf("%s\n", report.c_str());
  });
}

/// `lockstep-data sparse`: a base/delta export loaded as a serving model would load it.
void add_sparse_command(CLI::App& app) {
  struct Args {
    std::string dir, table;
    std::vector<uint64_t> keys;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "sparse",
      "load a sparse export (lockstep-train --export-sparse: the newest base and the deltas "
      "after it, every file verified) and print its tables, or look keys up");
  cmd->add_option("dir", args->dir, "the export directory")->required();
  cmd->add_option("--table", args->table, "the table of --key");
  cmd->add_option("--key", args->keys, "feasigns to print: lr weight and embedx (repeatable)");
  cmd->callback([args] {
    const auto m = lockstep::train::load_sparse_model(args->dir);
    std::printf("%s: base %lld, %zu delta(s) after it\n", args->dir.c_str(),
                static_cast<long long>(m.base), m.deltas.size());
    for (const auto& [name, t] : m.tables) {
      int64_t admitted = 0;
      for (uint8_t h : t.has_embedx) admitted += h;
      std::printf("  table %-20s dim %lld: %lld feasigns, %lld with embedx\n", name.c_str(),
                  static_cast<long long>(t.dim), static_cast<long long>(t.size()),
                  static_cast<long long>(admitted));
    }
    if (args->keys.empty()) return;
    const auto it = m.tables.find(args->table);
    LOCKSTEP_CHECK(it != m.tables.end(), "--table '{}' is not a table of {}", args->table,
                   args->dir);
    std::vector<float> row(static_cast<size_t>(it->second.dim));
    for (uint64_t key : args->keys) {
      float lr = 0;
      const bool held = it->second.lookup(key, row.data(), &lr);
      std::printf("%llu\t%s\tlr %.6g\tembedx [%s]\n", static_cast<unsigned long long>(key),
                  held ? "held" : "absent", lr, fmt::format("{:.6g}", fmt::join(row, ", ")).c_str());
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep-data: data preparation tools: convert (text → binary cache, docs/data_cache.md), movielens (docs/movielens.md), sparse (read a base/delta export, docs/feasign_store.md)"};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.require_subcommand(1);
  add_movielens_command(app);
  add_convert_command(app);
  add_sparse_command(app);
  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockstep-data: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

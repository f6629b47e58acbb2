// lockstep-data: data preparation tools, one subcommand each.
//
//   lockstep-data movielens --ratings ml/ratings.csv --movies ml/movies.csv --out data/ml
//
// movielens: MovieLens ratings → behaviour-sequence CTR records (schema.toml, train.tsv,
// valid.tsv, test.tsv, movielens.json) that `lockstep-train --data DIR` reads; see
// docs/movielens.md.
//
// A subcommand is a function that registers its options and its action on the app
// (add_<name>_command); main only parses and reports errors.

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/data/movielens.h"

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lockstep-data: data preparation tools (see docs/movielens.md)"};
  app.set_version_flag("--version", LOCKSTEP_VERSION_STRING);
  app.require_subcommand(1);
  add_movielens_command(app);
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

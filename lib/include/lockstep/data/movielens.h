#pragma once
// MovieLens ratings → behaviour-sequence CTR data in lockstep's text format (docs/movielens.md).
//
// Each rating becomes one record, as in the DIN paper (Zhou et al., KDD 2018): the label is
// "rating >= click_threshold", the target is the rated movie with its category and genres, and
// the history is the user's earlier movies (and their categories), oldest first, at most max_len
// of them, the most recent kept. Only strictly earlier ratings enter a history: ratings a user
// gave in the same second as the target are never part of it, so neither the target nor its
// label can leak through a tie. The records are split in time (per user or by global time), and
// every rating lands in exactly one split.
//
// Input: the CSV files of the GroupLens "ml-latest" family (ml-latest-small, ml-latest, ml-20m,
// ml-25m, ...):
//
//   ratings.csv  userId,movieId,rating,timestamp      e.g. 1,31,2.5,1260759144
//   movies.csv   movieId,title,genres                 e.g. 11,"American President, The (1995)",
//                                                          Comedy|Drama|Romance
//
// Output (convert_movielens), every file written atomically:
//
//   schema.toml                      movielens_schema(max_len)
//   train.tsv, valid.tsv, test.tsv   the records of the three splits
//   movielens.json                   counts, click rates, the genre ids and the options used

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/data/schema.h"

namespace lockstep::data {

/// Which earlier ratings of the user form a record's history.
enum class MovieLensHistory {
  kAll,    ///< every movie the user rated before the target
  kLiked,  ///< only those rated >= click_threshold (the user's earlier clicks)
};

/// How the records are divided into train, valid and test.
enum class MovieLensSplit {
  /// Each user's ratings in time order: the last test_fraction (rounded down) go to test, the
  /// valid_fraction (rounded down) before them to valid, the rest to train.
  kPerUser,
  /// All ratings in time order (timestamp, userId, movieId): the first part to train, the next
  /// valid_fraction to valid, the last test_fraction to test.
  kGlobal,
  /// Whole users held out (the DIN paper's MovieLens protocol): the users in a seeded
  /// pseudo-random order, the first test_fraction of them (rounded down) with all their ratings
  /// to test, the next valid_fraction to valid, the rest to train. Held-out users are unseen in
  /// training: only their histories describe them.
  kNewUsers,
};

/// "all" / "liked"; "user" / "global" / "new-users".
std::string_view to_string(MovieLensHistory history);
std::string_view to_string(MovieLensSplit split);
/// Inverse of to_string; throws Error naming the accepted values.
MovieLensHistory parse_movielens_history(std::string_view text);
MovieLensSplit parse_movielens_split(std::string_view text);

struct MovieLensOptions {
  /// A rating >= click_threshold is a click (label 1). The DIN paper: 4 (of 5 stars).
  double click_threshold = 4.0;
  /// History length kept per record (the most recent), in [1, kMaxSequenceLength].
  int64_t max_len = 50;
  MovieLensHistory history = MovieLensHistory::kLiked;
  MovieLensSplit split = MovieLensSplit::kPerUser;
  /// Fractions of the ratings in valid and test, each in [0, 0.5].
  double valid_fraction = 0.1;
  double test_fraction = 0.1;
  /// Writes train.tsv in a pseudo-random order (seeded, the same on every machine) instead of
  /// time order: lockstep-train reads a file in order, and a user's ratings come in bursts, so
  /// time-ordered mini-batches would each be about one or two users. valid.tsv and test.tsv are
  /// always in time order.
  bool shuffle_train = true;
  /// Seed of the train.tsv shuffle and of the kNewUsers user order.
  uint64_t seed = 1;

  /// Throws ConfigError naming the option when one is out of range.
  void validate() const;
};

/// One line of ratings.csv. `line` is its 1-based line number in the file.
struct MovieLensRating {
  uint64_t user = 0;
  uint64_t movie = 0;
  float rating = 0;
  int64_t timestamp = 0;
  int64_t line = 0;
};

/// One line of movies.csv: genres as listed ('|'-separated; "(no genres listed)" is kept as the
/// one genre of a movie without any).
struct MovieLensMovie {
  uint64_t id = 0;
  std::string title;
  std::vector<std::string> genres;
  int64_t line = 0;
};

/// Splits one CSV record (RFC 4180, without line breaks inside fields) into `fields`: fields are
/// separated by commas; a field starting with '"' is quoted, may hold commas, and writes a quote
/// as '""'. Throws Error (without a location: the caller adds file:line) on a quote inside an
/// unquoted field, text after a closing quote, or an unterminated quoted field.
void split_csv_record(std::string_view line, std::vector<std::string>& fields);

/// Reads ratings.csv. The header must name the columns userId, movieId, rating and timestamp
/// (in any order; other columns are ignored). Ids are decimal uint64, the rating a finite
/// number >= 0, the timestamp a decimal int64. Empty lines are skipped. Errors throw Error
/// naming the file, the line and the field: "ratings.csv:7: field 'rating' = 'x' is not a
/// number".
std::vector<MovieLensRating> read_movielens_ratings(const std::string& path);

/// Reads movies.csv (header with movieId, title and genres). A movieId listed twice and an empty
/// genre (as in "Drama||Comedy") are errors naming file:line.
std::vector<MovieLensMovie> read_movielens_movies(const std::string& path);

/// The schema of converted data, in record order:
///   label        1 for rating >= click_threshold, else 0
///   user         sparse, the userId
///   item         sparse, the movieId of the target
///   item_cat     sparse, the target's category: the id of its first listed genre
///   item_genres  sparse, the ids of all its genres
///   hist_items   sequence (max_len), earlier movieIds, oldest first
///   hist_cats    sequence (max_len), their categories (hist_cats[j] belongs to hist_items[j])
/// Every id is decimal (hash = false). The names are those of the synthetic schema, so the
/// built-in models of lockstep-train (--model embedding_mlp|din|bst|dual) fit it.
Schema movielens_schema(int64_t max_len);

/// What convert_movielens() wrote.
struct MovieLensSummary {
  int64_t users = 0;            ///< distinct userIds with ratings
  int64_t movies = 0;           ///< movies listed in movies.csv
  int64_t rated_movies = 0;     ///< distinct movieIds with ratings
  int64_t genres = 0;           ///< distinct genres (ids 1..genres)
  int64_t ratings = 0;          ///< = the records of the three splits together
  int64_t records[3] = {};      ///< train, valid, test
  int64_t clicks[3] = {};       ///< records with label 1, per split
  double mean_history[3] = {};  ///< mean history length (after max_len), per split

  double click_rate(int split) const {
    return records[split] > 0 ? static_cast<double>(clicks[split]) / records[split] : 0.0;
  }
};

/// Reads ratings_csv and movies_csv and writes out_dir/{schema.toml, train.tsv, valid.tsv,
/// test.tsv, movielens.json} (out_dir is created when missing). Every file is written under a
/// temporary name and renamed into place when all are complete (movielens.json last); should a
/// rename fail, the files already renamed are removed again. Throws Error on bad input (naming
/// file:line and the field), on a rating of a movie movies.csv does not list, and on bad options.
MovieLensSummary convert_movielens(const std::string& ratings_csv, const std::string& movies_csv,
                                   const std::string& out_dir, const MovieLensOptions& options);

}  // namespace lockstep::data

// MovieLens conversion (lockstep/data/movielens.h): CSV parsing, labels, histories (order, the
// strictly-earlier rule with ties, truncation), genres, the splits, and errors naming file:line.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "data_test_util.h"
#include "lockstep/data/movielens.h"
#include "lockstep/data/text_format.h"
#include "test_util.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

using Ids = std::vector<uint64_t>;

// Slots of movielens_schema(): user, item, item_cat, item_genres, hist_items, hist_cats.
enum Slot { kUser, kItem, kCat, kGenres, kHistItems, kHistCats };

// Genre ids are 1..G in the order of the names ('(' sorts before letters).
const std::map<std::string, uint64_t> kGenre = {{"(no genres listed)", 1},
                                                {"Action", 2},
                                                {"Adventure", 3},
                                                {"Animation", 4},
                                                {"Children", 5},
                                                {"Comedy", 6},
                                                {"Crime", 7},
                                                {"Drama", 8},
                                                {"Fantasy", 9},
                                                {"Horror", 10},
                                                {"Mystery", 11},
                                                {"Romance", 12},
                                                {"Thriller", 13}};

const char* kMovies =
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    "2,\"American President, The (1995)\",Comedy|Drama|Romance\n"
    "3,\"Say \"\"Hi\"\" (2001)\",Drama\n"
    "4,Heat (1995),Thriller|Action|Crime\n"  // not in name order: the category is Thriller
    "5,Unknown (2018),(no genres listed)\n"
    "6,\"Ring, The \"\"Quoted\"\", (2002)\",Horror|Mystery\n";

// User 7, in file order. In time order (timestamp, movieId): 4@100, 1@200, 2@200 (a tie),
// 3@300, 6@400, 5@500. Liked (>= 4): 4, 1, 3, 5.
const char* kRatings =
    "userId,movieId,rating,timestamp\n"
    "7,4,4.0,100\n"
    "7,2,3.0,200\n"
    "7,1,5.0,200\n"
    "7,3,4.5,300\n"
    "7,6,2.0,400\n"
    "7,5,4.0,500\n";

/// A converted directory's splits read back.
struct Converted {
  Batch split[3];
  MovieLensSummary summary;
};

Converted convert(const test::TempDir& dir, const std::string& ratings, const std::string& movies,
                  const MovieLensOptions& options) {
  const std::string r = dir.write("ratings.csv", ratings);
  const std::string m = dir.write("movies.csv", movies);
  const std::string out = dir.file("out");
  Converted c;
  c.summary = convert_movielens(r, m, out, options);
  const Schema schema = Schema::load(out + "/schema.toml");
  REQUIRE(schema == movielens_schema(options.max_len));
  const char* names[3] = {"train", "valid", "test"};
  for (int k = 0; k < 3; ++k) c.split[k] = read_text(out + "/" + names[k] + ".tsv", schema);
  return c;
}

/// Options with everything in train, in time order.
MovieLensOptions all_train(MovieLensHistory history, int64_t max_len = 50) {
  MovieLensOptions o;
  o.history = history;
  o.max_len = max_len;
  o.valid_fraction = 0;
  o.test_fraction = 0;
  o.shuffle_train = false;
  return o;
}

/// Row b of a batch's slot.
Ids ids(const Batch& b, Slot slot, int64_t row) { return test::ids_of(b.sparse[slot], row); }

/// The row of `movie` (user 7's records hold each movie once).
int64_t row_of(const Batch& b, uint64_t movie) {
  for (int64_t r = 0; r < b.size; ++r)
    if (ids(b, kItem, r) == Ids{movie}) return r;
  FAIL("movie " << movie << " has no record");
  return -1;
}

}  // namespace

TEST_CASE("movielens: CSV records split on commas outside quotes", "[data][movielens]") {
  std::vector<std::string> f;
  split_csv_record("1,Heat (1995),Action|Crime", f);
  CHECK(f == std::vector<std::string>{"1", "Heat (1995)", "Action|Crime"});
  split_csv_record("11,\"American President, The (1995)\",Comedy", f);
  CHECK(f == std::vector<std::string>{"11", "American President, The (1995)", "Comedy"});
  split_csv_record("3,\"Say \"\"Hi\"\", then go\",\"\"", f);
  CHECK(f == std::vector<std::string>{"3", "Say \"Hi\", then go", ""});
  split_csv_record(",,", f);
  CHECK(f == std::vector<std::string>{"", "", ""});
  split_csv_record("", f);
  CHECK(f == std::vector<std::string>{""});

  CHECK_THAT(test::error_of([&] { split_csv_record("1,\"open, never closed", f); }),
             Contains("field 2") && Contains("no closing quote"));
  CHECK_THAT(test::error_of([&] { split_csv_record("1,\"a\"b,c", f); }),
             Contains("field 2") && Contains("text after the closing quote"));
  CHECK_THAT(test::error_of([&] { split_csv_record("1,a\"b,c", f); }),
             Contains("field 2") && Contains("does not start with one"));
}

TEST_CASE("movielens: movies.csv titles with commas and quotes, genres as listed",
          "[data][movielens]") {
  test::TempDir dir;
  const auto movies = read_movielens_movies(dir.write("movies.csv", kMovies));
  REQUIRE(movies.size() == 6);
  CHECK(movies[1].title == "American President, The (1995)");
  CHECK(movies[2].title == "Say \"Hi\" (2001)");
  CHECK(movies[5].title == "Ring, The \"Quoted\", (2002)");
  CHECK(movies[5].genres == std::vector<std::string>{"Horror", "Mystery"});
  CHECK(movies[3].genres == std::vector<std::string>{"Thriller", "Action", "Crime"});
  CHECK(movies[4].genres == std::vector<std::string>{"(no genres listed)"});
  CHECK(movies[5].line == 7);
  // Columns found by name in the header; \r\n line ends and a byte order mark are fine.
  const auto other = read_movielens_movies(
      dir.write("m2.csv", "\xEF\xBB\xBFgenres,movieId,title\r\nDrama,9,\"A, B\"\r\n\r\n"));
  REQUIRE(other.size() == 1);
  CHECK(other[0].id == 9);
  CHECK(other[0].title == "A, B");
  CHECK(other[0].genres == std::vector<std::string>{"Drama"});
}

TEST_CASE("movielens: labels follow the click threshold", "[data][movielens]") {
  test::TempDir dir;
  auto o = all_train(MovieLensHistory::kAll);
  const auto c = convert(dir, kRatings, kMovies, o);
  const std::map<uint64_t, float> expected = {{4, 1}, {1, 1}, {2, 0}, {3, 1}, {6, 0}, {5, 1}};
  REQUIRE(c.split[0].size == 6);
  for (const auto& [movie, label] : expected)
    CHECK(c.split[0].labels[row_of(c.split[0], movie)] == label);
  CHECK(c.summary.clicks[0] == 4);
  CHECK(c.summary.click_rate(0) == Approx(4.0 / 6));

  test::TempDir dir3;
  o.click_threshold = 4.5;  // 4.0 is no longer a click
  const auto c3 = convert(dir3, kRatings, kMovies, o);
  const std::map<uint64_t, float> expected3 = {{4, 0}, {1, 1}, {2, 0}, {3, 1}, {6, 0}, {5, 0}};
  for (const auto& [movie, label] : expected3)
    CHECK(c3.split[0].labels[row_of(c3.split[0], movie)] == label);
}

TEST_CASE("movielens: a history holds strictly earlier movies, oldest first", "[data][movielens]") {
  test::TempDir dir;
  const auto c = convert(dir, kRatings, kMovies, all_train(MovieLensHistory::kAll));
  const Batch& b = c.split[0];
  // Records come in time order: 4, 1, 2 (tie with 1, broken by movieId), 3, 6, 5.
  CHECK(b.sparse[kItem].keys == Ids{4, 1, 2, 3, 6, 5});
  CHECK(ids(b, kUser, 0) == Ids{7});
  CHECK(ids(b, kHistItems, row_of(b, 4)).empty());
  // 1 and 2 were rated in the same second: neither is in the other's history.
  CHECK(ids(b, kHistItems, row_of(b, 1)) == Ids{4});
  CHECK(ids(b, kHistItems, row_of(b, 2)) == Ids{4});
  CHECK(ids(b, kHistItems, row_of(b, 3)) == Ids{4, 1, 2});
  CHECK(ids(b, kHistItems, row_of(b, 6)) == Ids{4, 1, 2, 3});
  CHECK(ids(b, kHistItems, row_of(b, 5)) == Ids{4, 1, 2, 3, 6});
  CHECK(c.summary.mean_history[0] == Approx((0 + 1 + 1 + 3 + 4 + 5) / 6.0));

  SECTION("liked only: the earlier ratings >= threshold") {
    test::TempDir liked_dir;
    const auto l = convert(liked_dir, kRatings, kMovies, all_train(MovieLensHistory::kLiked));
    const Batch& lb = l.split[0];
    CHECK(ids(lb, kHistItems, row_of(lb, 4)).empty());
    CHECK(ids(lb, kHistItems, row_of(lb, 1)) == Ids{4});
    CHECK(ids(lb, kHistItems, row_of(lb, 2)) == Ids{4});
    CHECK(ids(lb, kHistItems, row_of(lb, 3)) == Ids{4, 1});
    CHECK(ids(lb, kHistItems, row_of(lb, 6)) == Ids{4, 1, 3});
    CHECK(ids(lb, kHistItems, row_of(lb, 5)) == Ids{4, 1, 3});
  }
  SECTION("max_len keeps the most recent") {
    test::TempDir short_dir;
    const auto s = convert(short_dir, kRatings, kMovies, all_train(MovieLensHistory::kAll, 2));
    const Batch& sb = s.split[0];
    CHECK(ids(sb, kHistItems, row_of(sb, 1)) == Ids{4});
    CHECK(ids(sb, kHistItems, row_of(sb, 3)) == Ids{1, 2});
    CHECK(ids(sb, kHistItems, row_of(sb, 5)) == Ids{3, 6});
    CHECK(ids(sb, kHistCats, row_of(sb, 5)) == Ids{kGenre.at("Drama"), kGenre.at("Horror")});
  }
}

TEST_CASE("movielens: the category is the first listed genre, aligned with the history",
          "[data][movielens]") {
  test::TempDir dir;
  const auto c = convert(dir, kRatings, kMovies, all_train(MovieLensHistory::kAll));
  const Batch& b = c.split[0];
  CHECK(c.summary.genres == 13);
  CHECK(c.summary.movies == 6);
  CHECK(c.summary.users == 1);
  const auto g = [](const char* name) { return kGenre.at(name); };
  CHECK(ids(b, kCat, row_of(b, 1)) == Ids{g("Adventure")});
  CHECK(ids(b, kCat, row_of(b, 4)) == Ids{g("Thriller")});
  CHECK(ids(b, kCat, row_of(b, 5)) == Ids{g("(no genres listed)")});
  CHECK(ids(b, kGenres, row_of(b, 1)) ==
        Ids{g("Adventure"), g("Animation"), g("Children"), g("Comedy"), g("Fantasy")});
  CHECK(ids(b, kGenres, row_of(b, 4)) == Ids{g("Thriller"), g("Action"), g("Crime")});
  CHECK(ids(b, kGenres, row_of(b, 6)) == Ids{g("Horror"), g("Mystery")});
  // hist_cats[j] is the category of hist_items[j].
  CHECK(ids(b, kHistCats, row_of(b, 5)) ==
        Ids{g("Thriller"), g("Adventure"), g("Comedy"), g("Drama"), g("Horror")});
}

namespace {

// A data set for the split tests: 40 movies and 6 users with 3 to 47 ratings each, timestamps
// with many ties, in a scrambled file order.
struct Generated {
  std::string ratings = "userId,movieId,rating,timestamp\n";
  std::string movies = "movieId,title,genres\n";
  // (user, movie) -> (timestamp, rating); each user rates a movie at most once.
  std::map<std::pair<uint64_t, uint64_t>, std::pair<int64_t, float>> truth;
};

Generated generate() {
  Generated g;
  const char* genres[] = {"Drama", "Comedy|Drama", "Action|Thriller", "Horror", "Children"};
  for (int m = 1; m <= 40; ++m)
    g.movies += std::to_string(m * 10) + ",\"Movie " + std::to_string(m) + ", The\"," +
                genres[m % 5] + "\n";
  const int counts[] = {10, 11, 20, 3, 25, 40};
  std::vector<std::string> lines;
  for (int u = 0; u < 6; ++u) {
    for (int k = 0; k < counts[u]; ++k) {
      const uint64_t user = 100 + u, movie = 10 * static_cast<uint64_t>(1 + (k * 7 + u) % 40);
      const int64_t ts = 1000 + (k * 37 + u * 11) % 23 * 5;  // repeats: ties in time
      const float rating = 0.5f * static_cast<float>(1 + (k * 3 + u) % 10);
      g.truth[{user, movie}] = {ts, rating};
      lines.push_back(fmt::format("{},{},{},{}\n", user, movie, rating, ts));
    }
  }
  std::reverse(lines.begin(), lines.end());
  std::rotate(lines.begin(), lines.begin() + 17, lines.end());
  for (const auto& l : lines) g.ratings += l;
  return g;
}

using Key = std::tuple<int64_t, uint64_t, uint64_t>;  // (timestamp, user, movie)

std::vector<Key> keys_of(const Batch& b, const Generated& g) {
  std::vector<Key> out;
  for (int64_t r = 0; r < b.size; ++r) {
    const uint64_t user = ids(b, kUser, r).at(0), movie = ids(b, kItem, r).at(0);
    out.emplace_back(g.truth.at({user, movie}).first, user, movie);
  }
  return out;
}

}  // namespace

TEST_CASE("movielens: the per-user split puts each user's last ratings in valid and test",
          "[data][movielens]") {
  const Generated g = generate();
  test::TempDir dir;
  MovieLensOptions o;
  o.history = MovieLensHistory::kAll;
  o.split = MovieLensSplit::kPerUser;
  const auto c = convert(dir, g.ratings, g.movies, o);

  // Every rating exactly once across the splits, with its label.
  std::multiset<std::tuple<uint64_t, uint64_t, float>> seen;
  for (const auto& b : c.split)
    for (int64_t r = 0; r < b.size; ++r)
      seen.emplace(ids(b, kUser, r).at(0), ids(b, kItem, r).at(0), b.labels[r]);
  std::multiset<std::tuple<uint64_t, uint64_t, float>> expected;
  for (const auto& [key, value] : g.truth)
    expected.emplace(key.first, key.second, value.second >= 4.0f ? 1.0f : 0.0f);
  CHECK(seen == expected);
  CHECK(c.summary.ratings == static_cast<int64_t>(g.truth.size()));
  CHECK(c.summary.users == 6);

  // Per user: floor(10 %) test, floor(10 %) valid, in time order after train.
  const int counts[] = {10, 11, 20, 3, 25, 40};
  for (int u = 0; u < 6; ++u) {
    INFO("user " << 100 + u);
    std::vector<int64_t> times[3];
    for (int k = 0; k < 3; ++k)
      for (const auto& [ts, user, movie] : keys_of(c.split[k], g))
        if (user == static_cast<uint64_t>(100 + u)) times[k].push_back(ts);
    const auto expect = static_cast<size_t>(counts[u] / 10);
    CHECK(times[2].size() == expect);
    CHECK(times[1].size() == expect);
    CHECK(times[0].size() == static_cast<size_t>(counts[u]) - 2 * expect);
    for (int k = 0; k + 1 < 3; ++k)
      for (const int64_t a : times[k])
        for (int j = k + 1; j < 3; ++j)
          for (const int64_t b : times[j]) CHECK(a <= b);
  }
  // valid.tsv and test.tsv in time order; train.tsv shuffled (a permutation of time order).
  for (int k = 1; k < 3; ++k) {
    const auto keys = keys_of(c.split[k], g);
    CHECK(std::is_sorted(keys.begin(), keys.end()));
  }
  auto train = keys_of(c.split[0], g);
  CHECK_FALSE(std::is_sorted(train.begin(), train.end()));
  std::sort(train.begin(), train.end());
  test::TempDir time_dir;
  o.shuffle_train = false;
  const auto t = convert(time_dir, g.ratings, g.movies, o);
  CHECK(keys_of(t.split[0], g) == train);
}

TEST_CASE("movielens: the global split cuts all ratings at time quantiles", "[data][movielens]") {
  const Generated g = generate();
  test::TempDir dir;
  MovieLensOptions o;
  o.split = MovieLensSplit::kGlobal;
  o.history = MovieLensHistory::kLiked;
  o.valid_fraction = 0.2;
  o.test_fraction = 0.15;
  const auto c = convert(dir, g.ratings, g.movies, o);
  std::vector<Key> all;
  for (const auto& [key, value] : g.truth) all.emplace_back(value.first, key.first, key.second);
  std::sort(all.begin(), all.end());
  const size_t n = all.size(), n_test = n * 15 / 100, n_valid = n * 20 / 100;
  CHECK(keys_of(c.split[2], g) == std::vector<Key>(all.end() - n_test, all.end()));
  CHECK(keys_of(c.split[1], g) ==
        std::vector<Key>(all.end() - n_test - n_valid, all.end() - n_test));
  auto train = keys_of(c.split[0], g);
  std::sort(train.begin(), train.end());
  CHECK(train == std::vector<Key>(all.begin(), all.end() - n_test - n_valid));
  CHECK(c.summary.records[0] + c.summary.records[1] + c.summary.records[2] ==
        static_cast<int64_t>(n));
  // A history reaches back into earlier splits: the user's whole past, strictly earlier.
  const Batch& test = c.split[2];
  for (int64_t r = 0; r < test.size; ++r) {
    const uint64_t user = ids(test, kUser, r).at(0);
    const int64_t ts = g.truth.at({user, ids(test, kItem, r).at(0)}).first;
    int64_t liked_before = 0;
    for (const auto& [key, value] : g.truth)
      liked_before += key.first == user && value.first < ts && value.second >= 4.0f;
    CHECK(static_cast<int64_t>(ids(test, kHistItems, r).size()) ==
          std::min<int64_t>(liked_before, 50));
  }
}

TEST_CASE("movielens: the new-users split holds out whole users, chosen by the seed",
          "[data][movielens]") {
  const Generated g = generate();
  MovieLensOptions o;
  o.split = MovieLensSplit::kNewUsers;
  o.history = MovieLensHistory::kAll;
  o.valid_fraction = 0.2;  // 6 users: floor(1.2) = 1 valid user, 1 test user
  o.test_fraction = 0.2;
  std::set<uint64_t> held_out[2];  // per seed: the valid and test users
  for (const uint64_t seed : {1, 2, 3}) {
    INFO("seed " << seed);
    o.seed = seed;
    test::TempDir dir;
    const auto c = convert(dir, g.ratings, g.movies, o);
    std::set<uint64_t> users[3];
    for (int k = 0; k < 3; ++k)
      for (int64_t r = 0; r < c.split[k].size; ++r)
        users[k].insert(ids(c.split[k], kUser, r).at(0));
    CHECK(users[0].size() == 4);
    CHECK(users[1].size() == 1);
    CHECK(users[2].size() == 1);
    // A user's ratings all land in its split, and every rating exactly once.
    std::map<uint64_t, int64_t> per_user;
    for (const auto& [key, value] : g.truth) ++per_user[key.first];
    for (int k = 0; k < 3; ++k) {
      int64_t expected = 0;
      for (const uint64_t u : users[k]) expected += per_user.at(u);
      CHECK(c.split[k].size == expected);
      for (int j = 0; j < k; ++j)
        for (const uint64_t u : users[k]) CHECK(users[j].count(u) == 0);
    }
    // Held-out records in time order, with the user's whole (strictly earlier) past.
    const auto keys = keys_of(c.split[2], g);
    CHECK(std::is_sorted(keys.begin(), keys.end()));
    const Batch& test = c.split[2];
    for (int64_t r = 0; r < test.size; ++r) {
      const uint64_t user = ids(test, kUser, r).at(0);
      const int64_t ts = g.truth.at({user, ids(test, kItem, r).at(0)}).first;
      int64_t before = 0;
      for (const auto& [key, value] : g.truth) before += key.first == user && value.first < ts;
      CHECK(static_cast<int64_t>(ids(test, kHistItems, r).size()) == std::min<int64_t>(before, 50));
    }
    if (seed <= 2) held_out[seed - 1] = {*users[1].begin(), *users[2].begin()};
  }
  CHECK(held_out[0] != held_out[1]);  // another seed, other users (for these two seeds)
}

TEST_CASE("movielens: the output directory holds exactly the converted files",
          "[data][movielens]") {
  test::TempDir dir;
  convert(dir, kRatings, kMovies, all_train(MovieLensHistory::kLiked));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("out")))
    files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  // No meta.json: lockstep-train would read it as lockstep-datagen metadata.
  CHECK(files == std::vector<std::string>{"movielens.json", "schema.toml", "test.tsv", "train.tsv",
                                          "valid.tsv"});
  std::ifstream in(dir.file("out/movielens.json"));
  const std::string meta((std::istreambuf_iterator<char>(in)), {});
  CHECK_THAT(meta, Contains("\"history\": \"liked\"") && Contains("\"records\": 6") &&
                       Contains("\"Thriller\": 13") && Contains("\"users\": 1"));
}

TEST_CASE("movielens: bad input is an error naming file:line and the field", "[data][movielens]") {
  test::TempDir dir;
  const std::string movies = dir.write("movies.csv", kMovies);
  const std::string out = dir.file("out");
  MovieLensOptions o;
  const auto error = [&](const std::string& ratings_text) {
    const std::string ratings = dir.write("ratings.csv", ratings_text);
    return test::error_of([&] { convert_movielens(ratings, movies, out, o); });
  };
  const std::string header = "userId,movieId,rating,timestamp\n";
  CHECK_THAT(error(header + "7,4,4.0,100\n7,2,x,200\n"),
             Contains("ratings.csv:3: field 'rating' = 'x' is not a number"));
  CHECK_THAT(error(header + "7,4,4.0,100\n7,2,-1,200\n"),
             Contains("ratings.csv:3: field 'rating' = '-1' is out of range"));
  CHECK_THAT(error(header + "7,4,4.0\n"),
             Contains("ratings.csv:2: expected 4 comma-separated fields") && Contains("found 3"));
  CHECK_THAT(error(header + "u7,4,4.0,100\n"),
             Contains("ratings.csv:2: field 'userId' = 'u7' is not a decimal uint64 id"));
  CHECK_THAT(error(header + "-7,4,4.0,100\n"),
             Contains("ratings.csv:2: field 'userId' = '-7' is not a decimal uint64 id"));
  CHECK_THAT(error(header + "7,4,4.0,1e9\n"),
             Contains("ratings.csv:2: field 'timestamp' = '1e9' is not a decimal int64"));
  CHECK_THAT(
      error(header + "7,4,4.0,100\n\n7,99,4.0,100\n"),
      Contains("ratings.csv:4: field 'movieId' = 99 is not listed in") && Contains("movies.csv"));
  CHECK_THAT(error("7,4,4.0,100\n"), Contains("ratings.csv:1: the header '7,4,4.0,100' has no "
                                              "column 'userId'"));
  CHECK_THAT(error(""), Contains("ratings.csv: the file is empty"));
  CHECK_THAT(error(header + "7,\"4,4.0,100\n"),
             Contains("ratings.csv:2: field 2") && Contains("no closing quote"));
  CHECK_THAT(test::error_of([&] { convert_movielens(dir.file("missing.csv"), movies, out, o); }),
             Contains("cannot open") && Contains("missing.csv"));

  const std::string ratings = dir.write("ratings.csv", kRatings);
  const auto movie_error = [&](const std::string& movies_text) {
    const std::string m = dir.write("bad-movies.csv", movies_text);
    return test::error_of([&] { convert_movielens(ratings, m, out, o); });
  };
  CHECK_THAT(movie_error("movieId,title,genres\n1,A,Drama\n2,B,Comedy\n1,C,Drama\n"),
             Contains("bad-movies.csv:4: movieId 1 is listed again (first at line 2)"));
  CHECK_THAT(movie_error("movieId,title,genres\n1,A,Drama||Comedy\n"),
             Contains("bad-movies.csv:2: field 'genres' = 'Drama||Comedy' has an empty genre"));
  CHECK_THAT(movie_error("movieId,title,genres\n1,A,\n"),
             Contains("bad-movies.csv:2: field 'genres' = '' has an empty genre"));
  CHECK_THAT(movie_error("movieId,title\n1,A\n"),
             Contains("bad-movies.csv:1: the header 'movieId,title' has no column 'genres'"));
  CHECK_THAT(movie_error("movieId,title,genres\n1,\"A\" B,Drama\n"),
             Contains("bad-movies.csv:2: field 2") && Contains("text after the closing quote"));

  o.max_len = 0;
  CHECK_THAT(test::error_of([&] { convert_movielens(ratings, movies, out, o); }),
             Contains("max_len = 0 is out of range"));
  o.max_len = 50;
  o.test_fraction = 0.7;
  CHECK_THAT(test::error_of([&] { convert_movielens(ratings, movies, out, o); }),
             Contains("test_fraction = 0.7 is out of range"));
  CHECK_FALSE(std::filesystem::exists(out));  // every failure above wrote nothing
}

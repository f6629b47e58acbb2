// End-to-end: `lockstep-data movielens` converts a small MovieLens-format sample, and
// `lockstep-train --data OUT` trains on the result with the built-in models. Built only with
// LOCKSTEP_BUILD_EXAMPLES (test/CMakeLists.txt), which also builds the tools before the tests.

#include <catch2/catch.hpp>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "lockstep/data/text_format.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

const std::string kData = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-data";
const std::string kTrain = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-train";

/// A MovieLens-format sample: 40 users rate 30 of 60 movies each. A user likes the genre
/// `user % 4` and dislikes the others, so the history carries the signal.
void write_sample(const test::TempDir& dir) {
  const char* genres[] = {"Action|Thriller", "Comedy", "Drama|Romance", "Horror"};
  std::string movies = "movieId,title,genres\n";
  for (int m = 1; m <= 60; ++m)
    movies += fmt::format("{},\"Movie {}, The (19{})\",{}\n", m * 3, m, 50 + m % 50, genres[m % 4]);
  std::string ratings = "userId,movieId,rating,timestamp\n";
  for (int u = 1; u <= 40; ++u)
    for (int k = 0; k < 30; ++k) {
      const int m = 1 + (u * 7 + k * 11) % 60;
      const bool likes = m % 4 == u % 4 || (u * 13 + k * 5) % 9 == 0;
      ratings += fmt::format("{},{},{},{}\n", u, m * 3, likes ? "4.5" : "2.0",
                             1500000000 + u * 1000 + k * 10 - (k % 3 == 1 ? 10 : 0));
    }
  dir.write("ratings.csv", ratings);
  dir.write("movies.csv", movies);
}

}  // namespace

TEST_CASE("lockstep-data movielens converts a sample that lockstep-train --data trains on",
          "[data][cli][movielens]") {
  REQUIRE(std::filesystem::exists(kData));
  test::TempDir scratch;
  write_sample(scratch);
  const std::string out = scratch.file("ml");
  std::string output;
  REQUIRE(test::run_tool(kData,
                         "movielens --ratings " + scratch.file("ratings.csv") + " --movies " +
                             scratch.file("movies.csv") + " --out " + out + " --max-len 8",
                         scratch, output) == 0);
  INFO(output);
  // 30 ratings per user: 3 valid and 3 test each.
  CHECK_THAT(output, Contains("1200 ratings of 40 users") && Contains("train      960 records") &&
                         Contains("valid      120 records") && Contains("test       120 records"));
  const auto schema = data::Schema::load(out + "/schema.toml");
  CHECK(data::read_text(out + "/test.tsv", schema).size == 120);
  CHECK_FALSE(std::filesystem::exists(out + "/meta.json"));

  // The built-in models, and the configurations of examples/movielens.sh.
  const std::string configs = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/configs/";
  for (const std::string& model :
       std::vector<std::string>{"--model embedding_mlp", "--model din", "--model dual",
                                "--config " + configs + "movielens_mlp.toml",
                                "--config " + configs + "movielens_din.toml",
                                "--config " + configs + "movielens_dual.toml"}) {
    INFO(model);
    REQUIRE(test::run_tool(kTrain,
                           "--device cpu --data " + out + " " + model +
                               " --epochs 2 --batch-size 64 --table-rows 1024 --log-every 0",
                           scratch, output) == 0);
    INFO(output);
    // valid.tsv is evaluated every epoch, test.tsv at the end.
    std::smatch m;
    REQUIRE(std::regex_search(
        output, m, std::regex(R"(result: validation AUC ([0-9.]+), test AUC ([0-9.]+))")));
    for (int k = 1; k <= 2; ++k) {
      CHECK(std::stod(m[k]) >= 0.0);
      CHECK(std::stod(m[k]) <= 1.0);
    }
    CHECK_THAT(output, Contains("over 120 samples"));
  }
}

TEST_CASE("lockstep-data movielens reports bad input and bad flags", "[data][cli][movielens]") {
  test::TempDir scratch;
  write_sample(scratch);
  const std::string movies = scratch.file("movies.csv"), out = scratch.file("ml");
  std::string output;
  const std::string bad =
      scratch.write("bad.csv", "userId,movieId,rating,timestamp\n1,3,4.0,10\n1,6,four,20\n");
  CHECK(test::run_tool(kData,
                       "movielens --ratings " + bad + " --movies " + movies + " --out " + out,
                       scratch, output) == 1);
  CHECK_THAT(output, Contains("bad.csv:3: field 'rating' = 'four' is not a number"));
  CHECK_FALSE(std::filesystem::exists(out));

  CHECK(test::run_tool(kData, "", scratch, output) != 0);
  CHECK_THAT(output, Contains("subcommand"));
  CHECK(test::run_tool(kData, "movielens --ratings " + bad + " --movies " + movies, scratch,
                       output) != 0);
  CHECK_THAT(output, Contains("--out is required"));
  CHECK(test::run_tool(kData,
                       "movielens --ratings " + bad + " --movies " + movies + " --out " + out +
                           " --history rated",
                       scratch, output) != 0);
  CHECK_THAT(output, Contains("--history") && Contains("rated"));
  CHECK(test::run_tool(
            kData,
            "movielens --ratings " + bad + " --movies " + movies + " --out " + out + " --max-len 0",
            scratch, output) != 0);
  CHECK_THAT(output, Contains("--max-len"));
}

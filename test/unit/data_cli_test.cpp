// lockstep-train on the user's own files: the CSV sample of examples/data (README, "Train on your
// own data") through --train/--valid/--test/--schema, globs over split files, bad records
// failing with file:line or skipped and reported, and flag errors.

#include <catch2/catch.hpp>

#include <fstream>
#include <regex>

#include "data_test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const std::string kTrain = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-train";
const std::string kSample = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/data";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Splits a CSV with a header into `parts` files, each with the header, under `dir`.
void split_csv(const std::string& from, const test::TempDir& dir, int parts) {
  std::istringstream in(read_file(from));
  std::string header, line;
  std::getline(in, header);
  std::vector<std::string> text(parts, header + "\n");
  for (int i = 0; std::getline(in, line); ++i) text[i % parts] += line + "\n";
  for (int p = 0; p < parts; ++p) dir.write(fmt::format("part-{}.csv", p), text[p]);
}
}  // namespace

TEST_CASE("lockstep-train learns from the README's CSV sample, files given as a glob",
          "[data][cli]") {
  test::TempDir scratch;
  split_csv(kSample + "/ads-train.csv", scratch, 3);
  std::string out;
  const std::string common = "--device cpu --log-every 0 --table-rows 4096 --batch-size 64 "
                             "--schema " + kSample + "/ads.schema.toml --valid " + kSample +
                             "/ads-valid.csv --test " + kSample + "/ads-test.csv";
  REQUIRE(test::run_tool(kTrain, common + " --train '" + scratch.file("part-*.csv") + "'", scratch,
                         out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("--train 3 file(s)"));
  CHECK_THAT(out, Contains("epoch 1 trained on 5000 samples"));
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(validation AUC ([0-9.]+), test AUC ([0-9.]+))")));
  CHECK(std::stod(m[1]) > 0.6);
  CHECK(std::stod(m[2]) > 0.6);

  // A bad record: stops with file:line, or is skipped and reported with it.
  std::string part = read_file(scratch.file("part-1.csv"));
  const size_t line3 = part.find('\n', part.find('\n') + 1) + 1;  // header, record, then line 3
  part.insert(line3, "1,5,7,cat1,n/a,3,\"\"\n");
  scratch.write("part-1.csv", part);
  const std::string args = common + " --train '" + scratch.file("part-*.csv") + "'";
  CHECK(test::run_tool(kTrain, args, scratch, out) == 1);
  CHECK_THAT(out, Contains(scratch.file("part-1.csv") +
                           ":3: column 'price' (field 5): 'n/a' is not a number"));
  REQUIRE(test::run_tool(kTrain, args + " --on-bad-record skip", scratch, out) == 0);
  CHECK_THAT(out, Contains("epoch 1 trained on 5000 samples"));
  CHECK_THAT(out, Contains("1 bad record(s) skipped: 1 × bad number (e.g. " +
                           scratch.file("part-1.csv") + ":3: column 'price'"));
  CHECK(test::run_tool(kTrain, args + " --on-bad-record skip --max-bad-records 0", scratch, out) ==
        1);
  CHECK_THAT(out, Contains("more than 0 bad records on rank 0 in epoch 1 (--max-bad-records)"));
}

TEST_CASE("lockstep-train names missing or wrong data flags", "[data][cli]") {
  test::TempDir scratch;
  std::string out;
  CHECK(test::run_tool(kTrain, "--device cpu --train " + kSample + "/ads-train.csv", scratch,
                       out) == 1);
  CHECK_THAT(out, Contains("--train needs --schema"));
  CHECK(test::run_tool(kTrain,
                       "--device cpu --schema " + kSample + "/ads.schema.toml --train '" +
                           scratch.file("*.csv") + "'",
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("the pattern matches no file"));
  CHECK(test::run_tool(kTrain, "--device cpu --schema nope --train " + kSample + "/ads-train.csv",
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("cannot open schema file 'nope'"));
  // A tsv schema on a CSV file: the record's shape is named with its line.
  CHECK(test::run_tool(kTrain,
                       "--device cpu --schema " + std::string(LOCKSTEP_SOURCE_DIR) +
                           "/test/data/heldout-bad-record-rank1/schema.toml --train " + kSample +
                           "/ads-train.csv",
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("ads-train.csv:1: expected"));
}

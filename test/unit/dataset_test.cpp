// train::open_dataset and train::read_data_directory (lockstep/train/dataset.h): text and cache
// data opened in one call, read once across ranks with the documented sample ids, and errors
// that name the list and the file.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

#include "data_test_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/cache.h"
#include "lockstep/train/dataset.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const std::string kSample = std::string(LOCKSTEP_SOURCE_DIR) + "/examples/data";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Every batch of `source`'s first epoch, appended into one.
data::Batch read_all(train::BatchSource& source) {
  data::Batch all, b;
  source.start_epoch(0);
  while (source.next(b)) test::append_batch(all, b);
  return all;
}

// The byte offsets of the records of a CSV file with a header line (the text sample ids).
std::vector<uint64_t> record_offsets(const std::string& text) {
  std::vector<uint64_t> at;
  for (size_t p = text.find('\n') + 1; p < text.size(); p = text.find('\n', p) + 1) at.push_back(p);
  return at;
}
}  // namespace

TEST_CASE("open_dataset: text files read once across ranks, sample ids = byte offsets",
          "[data][dataset]") {
  const auto schema = data::Schema::load(kSample + "/ads.schema.toml");
  const std::string file = kSample + "/ads-train.csv";
  const std::string text = read_file(file);
  const auto offsets = record_offsets(text);
  REQUIRE(offsets.size() == 5000);

  std::vector<uint64_t> ids;
  int64_t records = 0;
  for (int rank = 0; rank < 3; ++rank) {
    train::DatasetOptions options;
    options.source.batch_size = 64;
    options.source.rank = rank;
    options.source.ranks = 3;
    train::Dataset d = train::open_dataset({kSample + "/ads-train*"}, &schema, options, "train");
    CHECK(d.files == std::vector<std::string>{file});
    CHECK(d.sizes == std::vector<uint64_t>{text.size()});
    CHECK(d.bytes == text.size());
    CHECK_FALSE(d.cache);
    CHECK(d.schema == schema);
    REQUIRE(dynamic_cast<train::TextBatchSource*>(d.source.get()));
    const data::Batch all = read_all(*d.source);
    records += all.size;
    ids.insert(ids.end(), all.sample_ids.begin(), all.sample_ids.end());
  }
  CHECK(records == 5000);
  std::sort(ids.begin(), ids.end());
  CHECK(ids == offsets);  // every record once, its id its byte offset
}

TEST_CASE("open_dataset: binary caches carry their schema and the text's sample ids",
          "[data][dataset]") {
  test::TempDir scratch;
  const auto schema = data::Schema::load(kSample + "/ads.schema.toml");
  train::DatasetOptions options;
  options.source.batch_size = 1000;
  train::Dataset text = train::open_dataset({kSample + "/ads-valid.csv"}, &schema, options, "text");
  const data::Batch from_text = read_all(*text.source);
  REQUIRE(from_text.size == 1000);
  const std::string cache = scratch.file("valid.cache");
  {
    data::CacheWriter writer(cache, schema);
    writer.append(from_text);
    writer.finish();
  }

  // No schema: the cache's own. Every sample, ids included, as read from the text.
  train::Dataset d = train::open_dataset({scratch.file("*.cache")}, nullptr, options, "cache");
  CHECK(d.cache);
  CHECK(d.schema == schema);
  CHECK(d.files == std::vector<std::string>{cache});
  CHECK(d.bytes == std::filesystem::file_size(cache));
  REQUIRE(dynamic_cast<train::CacheBatchSource*>(d.source.get()));
  test::require_same_batch(read_all(*d.source), from_text, "cache vs text");

  // The schema given must be the cache's.
  CHECK_NOTHROW(train::open_dataset({cache}, &schema, options, "cache"));
  const auto other = data::Schema::load_or_preset("criteo");
  REQUIRE_THROWS_WITH(train::open_dataset({cache}, &other, options, "--valid"),
                      Contains("--valid " + cache + ": the cache's schema differs from the schema "
                               "given: convert the data with this schema or open it without a "
                               "schema"));
  options.schema_flag = "--schema";
  options.schema_name = "criteo";
  REQUIRE_THROWS_WITH(train::open_dataset({cache}, &other, options, "--valid"),
                      Contains("differs from criteo: convert the data with this schema or leave "
                               "--schema out"));

  // Caches and text in one list.
  REQUIRE_THROWS_WITH(
      train::open_dataset({cache, kSample + "/ads-test.csv"}, &schema, options, "--test"),
      Contains("--test: 1 of 2 files are binary caches: give caches or text files, not both"));
}

TEST_CASE("open_dataset: errors name the list, the spec and the way out", "[data][dataset]") {
  test::TempDir scratch;
  const auto schema = data::Schema::load(kSample + "/ads.schema.toml");
  train::DatasetOptions options;
  REQUIRE_THROWS_WITH(train::open_dataset({kSample + "/ads-train.csv"}, nullptr, options, "train"),
                      Contains("train " + kSample + "/ads-train.csv: text records need a schema"));
  REQUIRE_THROWS_WITH(train::open_dataset({scratch.file("*.tsv")}, &schema, options, "--valid"),
                      Contains("--valid") && Contains("the pattern matches no file"));
  REQUIRE_THROWS_WITH(train::open_dataset({scratch.file("none.tsv")}, &schema, options, "--valid"),
                      Contains(scratch.file("none.tsv")));

  const std::string empty = scratch.write("empty.csv", "");
  REQUIRE_THROWS_WITH(train::open_dataset({empty}, &schema, options, "test data"),
                      Contains("test data " + empty + ": the data is empty (set "
                               "DatasetOptions::allow_empty to open it anyway)"));
  options.allow_empty_flag = "--allow-empty-data";
  REQUIRE_THROWS_WITH(train::open_dataset({empty}, &schema, options, "--test"),
                      Contains("--test " + empty + ": the data is empty (pass --allow-empty-data "
                               "to run on it anyway)"));
  options.allow_empty = true;
  train::Dataset d = train::open_dataset({empty}, &schema, options, "--test");
  CHECK(d.bytes == 0);
  CHECK(read_all(*d.source).size == 0);
}

TEST_CASE("read_data_directory: a lockstep-datagen directory's parts", "[data][dataset]") {
  test::TempDir dir;
  const std::string root = dir.path().string();
  SECTION("meta.json names the training files and the oracle AUC") {
    dir.write("meta.json", R"({"generator": "lockstep-datagen", "splits": {
        "train": {"files": [{"path": "train-0-of-2.tsv"}, {"path": "train-1-of-2.tsv"}]},
        "test": {"oracle_auc": 0.75, "files": [{"path": "test.tsv"}]}}})");
    const train::DataDirectory d = train::read_data_directory(root);
    CHECK(d.schema == root + "/schema.toml");
    CHECK(d.train ==
          std::vector<std::string>{root + "/train-0-of-2.tsv", root + "/train-1-of-2.tsv"});
    CHECK(d.valid.empty());
    CHECK(d.test == std::vector<std::string>{root + "/test.tsv"});
    CHECK(d.oracle_auc == 0.75);
  }
  SECTION("without meta.json: train.tsv, valid.tsv when present, test.tsv; no oracle") {
    dir.write("valid.tsv", "1\t2\n");
    const train::DataDirectory d = train::read_data_directory(root);
    CHECK(d.train == std::vector<std::string>{root + "/train.tsv"});
    CHECK(d.valid == std::vector<std::string>{root + "/valid.tsv"});
    CHECK(d.test == std::vector<std::string>{root + "/test.tsv"});
    CHECK(std::isnan(d.oracle_auc));
  }
  SECTION("a test split without an oracle AUC (null) has none") {
    dir.write("meta.json", R"({"splits": {"train": {"files": [{"path": "train.tsv"}]},
                                          "test": {"oracle_auc": null}}})");
    CHECK(std::isnan(train::read_data_directory(root).oracle_auc));
  }
  SECTION("another meta.json is named") {
    dir.write("meta.json", R"({"splits": {"train": {}}})");
    REQUIRE_THROWS_WITH(train::read_data_directory(root),
                        Contains(root + "/meta.json: not a lockstep-datagen meta.json"));
  }
}

// Files from anywhere read once: path expansion, sharding over ranks, the prefetching
// TextBatchSource (batches spanning files, exactly-once, determinism across worker counts,
// shuffling) and the bad-record policy.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "data_test_util.h"
#include "lockstep/data/cache.h"
#include "lockstep/data/data_files.h"
#include "lockstep/data/text_format.h"
#include "lockstep/train/batch_source.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

data::Schema small_schema() {
  return data::Schema({data::Column::label("click"), data::Column::dense("x", 2),
                       data::Column::sparse("user"), data::Column::sequence("hist", 3)});
}

// Record k of the test data: every field derived from k, so a record identifies itself.
std::string record(int64_t k) {
  std::string hist;
  for (int64_t i = 0; i < k % 5; ++i) hist += fmt::format("{}{}", i ? "," : "", k * 10 + i);
  return fmt::format("{}\t{},{}\t{}\t{}\n", k % 2, k, -k, 1000 + k, hist);
}

// Writes files of the given record counts; returns the paths and fills `all` with every record's
// user id (1000 + k), in file order.
std::vector<std::string> write_files(const test::TempDir& dir, const std::vector<int64_t>& counts,
                                     std::vector<uint64_t>* users = nullptr) {
  std::vector<std::string> paths;
  int64_t k = 0;
  for (size_t f = 0; f < counts.size(); ++f) {
    std::string text;
    for (int64_t i = 0; i < counts[f]; ++i, ++k) {
      text += record(k);
      if (users) users->push_back(static_cast<uint64_t>(1000 + k));
    }
    paths.push_back(dir.write(fmt::format("part-{:03}.tsv", f), text));
  }
  return paths;
}

struct Read {
  std::vector<int64_t> batch_sizes;
  std::vector<uint64_t> users, ids;  // in reading order
  std::vector<data::Batch> batches;
};

Read read_all(train::BatchSource& source, int64_t epoch = 0) {
  Read r;
  source.start_epoch(epoch);
  data::Batch b;
  while (source.next(b)) {
    r.batch_sizes.push_back(b.size);
    r.users.insert(r.users.end(), b.sparse[0].keys.begin(), b.sparse[0].keys.end());
    r.ids.insert(r.ids.end(), b.sample_ids.begin(), b.sample_ids.end());
    r.batches.push_back(b);
  }
  return r;
}

train::FileSourceOptions options(int64_t batch, int rank = 0, int ranks = 1, int workers = 1,
                                 int64_t chunk = 4 << 20) {
  train::FileSourceOptions o;
  o.batch_size = batch;
  o.rank = rank;
  o.ranks = ranks;
  o.workers = workers;
  o.chunk_bytes = chunk;
  return o;
}

}  // namespace

TEST_CASE("expand_data_paths takes files, directories and globs", "[data][files]") {
  test::TempDir dir;
  dir.write("b.tsv", "x");
  dir.write("a.tsv", "x");
  dir.write(".hidden", "x");
  dir.write("_SUCCESS", "");
  std::filesystem::create_directories(dir.file("sub"));
  dir.write("sub/c.csv", "x");
  const auto from_dir = data::expand_data_paths({dir.path().string()}, "--train");
  CHECK(from_dir == std::vector<std::string>{dir.file("a.tsv"), dir.file("b.tsv")});
  const auto from_glob = data::expand_data_paths({dir.file("*.tsv"), dir.file("sub/*")}, "--train");
  CHECK(from_glob ==
        std::vector<std::string>{dir.file("a.tsv"), dir.file("b.tsv"), dir.file("sub/c.csv")});
  CHECK(data::expand_data_paths({dir.file("b.tsv")}, "--test") ==
        std::vector<std::string>{dir.file("b.tsv")});

  CHECK_THAT(test::error_of([&] { data::expand_data_paths({dir.file("nope.tsv")}, "--train"); }),
             Contains("--train '" + dir.file("nope.tsv") + "': no such file or directory"));
  CHECK_THAT(test::error_of([&] { data::expand_data_paths({dir.file("*.parquet")}, "--valid"); }),
             Contains("the pattern matches no file"));
  CHECK_THAT(test::error_of([&] {
               data::expand_data_paths({dir.file("a.tsv"), dir.file("*.tsv")}, "--train");
             }),
             Contains("is named twice"));
  std::filesystem::create_directories(dir.file("empty"));
  CHECK_THAT(test::error_of([&] { data::expand_data_paths({dir.file("empty")}, "--train"); }),
             Contains("the directory holds no data files"));
}

TEST_CASE("plan_share deals whole files by size or cuts byte ranges, covering every byte once",
          "[data][files]") {
  const std::vector<std::vector<uint64_t>> cases = {
      {100, 100, 100, 100}, {500, 10, 10, 10, 10, 10}, {1000}, {7, 0, 3}, {0, 0}, {5, 9, 2, 8, 1}};
  for (const auto& sizes : cases) {
    for (int ranks = 1; ranks <= 4; ++ranks) {
      // Per file, which bytes each rank owns: the ranges of all ranks tile every file exactly.
      std::vector<std::vector<int>> owner(sizes.size());
      for (size_t f = 0; f < sizes.size(); ++f) owner[f].assign(sizes[f], 0);
      uint64_t most = 0, total = std::accumulate(sizes.begin(), sizes.end(), uint64_t{0});
      bool whole = false;
      for (int r = 0; r < ranks; ++r) {
        const data::Share s = data::plan_share(sizes, r, ranks);
        whole = s.whole_files;
        uint64_t mine = 0;
        for (const auto& range : s.ranges) {
          if (s.whole_files) CHECK((range.begin == 0 && range.end == sizes[range.file]));
          for (uint64_t b = range.begin; b < range.end; ++b) ++owner[range.file][b];
          mine += range.end - range.begin;
        }
        most = std::max(most, mine);
      }
      for (const auto& o : owner)
        for (int count : o) CHECK(count == 1);
      // Balanced: whole files within 5/4 of the mean, byte ranges within one byte of it.
      if (whole) CHECK(most * 4 * ranks <= total * 5 + 4 * ranks);
      else CHECK(most <= total / ranks + 1);
    }
  }
  // Enough similar files: whole files; one big file and two ranks: byte ranges.
  CHECK(data::plan_share({100, 100, 100, 100}, 1, 2).whole_files);
  CHECK_FALSE(data::plan_share({1000}, 1, 2).whole_files);
  CHECK_FALSE(data::plan_share({500, 10, 10}, 0, 2).whole_files);
}

TEST_CASE("TextBatchSource: batches span files, every record once over 1-4 ranks",
          "[data][files]") {
  test::TempDir dir;
  std::vector<uint64_t> users;
  // Many small files, an empty one, odd counts.
  const auto files = write_files(dir, {5, 0, 3, 7, 1, 1, 9, 2, 6}, &users);
  const data::Schema schema = small_schema();
  // One rank, whole batches across file boundaries: 34 records → 4 × 8 + 2.
  {
    train::TextBatchSource one(files, schema, options(8));
    const Read r = read_all(one);
    CHECK(r.batch_sizes == std::vector<int64_t>{8, 8, 8, 8, 2});
    CHECK(r.users == users);
    std::set<uint64_t> ids(r.ids.begin(), r.ids.end());
    CHECK(ids.size() == users.size());
  }
  for (int ranks = 1; ranks <= 4; ++ranks) {
    for (const int64_t chunk : {int64_t{1} << 20, int64_t{37}, int64_t{1}}) {
      for (const int workers : {0, 1, 3}) {
        INFO("ranks " << ranks << ", chunk " << chunk << " bytes, workers " << workers);
        std::multiset<uint64_t> seen;
        for (int r = 0; r < ranks; ++r) {
          train::TextBatchSource source(files, schema, options(4, r, ranks, workers, chunk));
          const Read read = read_all(source);
          for (size_t i = 0; i + 1 < read.batch_sizes.size(); ++i)
            CHECK(read.batch_sizes[i] == 4);  // only a rank's last batch is partial
          seen.insert(read.users.begin(), read.users.end());
        }
        CHECK(seen == std::multiset<uint64_t>(users.begin(), users.end()));
      }
    }
  }
}

TEST_CASE("TextBatchSource: a single file split in byte ranges; ids are byte offsets",
          "[data][files]") {
  test::TempDir dir;
  std::vector<uint64_t> users;
  const auto files = write_files(dir, {101}, &users);
  const data::Schema schema = small_schema();
  const Read whole = [&] {
    train::TextBatchSource s(files, schema, options(1000));
    return read_all(s);
  }();
  REQUIRE(whole.users == users);
  // Sample ids: each record's byte offset in the file.
  const auto all = data::read_text(files[0], schema);
  uint64_t offset = 0;
  for (int64_t k = 0; k < 101; ++k) {
    CHECK(whole.ids[static_cast<size_t>(k)] == offset);
    offset += record(k).size();
  }
  for (int ranks = 2; ranks <= 4; ++ranks) {
    std::vector<uint64_t> joined;
    for (int r = 0; r < ranks; ++r) {
      train::TextBatchSource s(files, schema, options(16, r, ranks));
      CHECK_FALSE(s.whole_files());
      const Read read = read_all(s);
      CHECK(!read.users.empty());
      joined.insert(joined.end(), read.users.begin(), read.users.end());
    }
    CHECK(joined == users);  // rank order = file order; every record once
  }
}

TEST_CASE("TextBatchSource: the same batches for any worker count; shuffling is seeded",
          "[data][files]") {
  test::TempDir dir;
  std::vector<uint64_t> users;
  const auto files = write_files(dir, {40, 25, 60, 3}, &users);
  const data::Schema schema = small_schema();
  auto run = [&](int workers, bool shuffle, uint64_t seed, int64_t epoch) {
    auto o = options(7, 0, 1, workers, 64);
    o.shuffle = shuffle;
    o.shuffle_seed = seed;
    o.shuffle_buffer = 20;
    train::TextBatchSource s(files, schema, o);
    return read_all(s, epoch).users;
  };
  const auto plain = run(0, false, 0, 0);
  CHECK(plain == users);
  CHECK(run(1, false, 0, 0) == plain);
  CHECK(run(4, false, 0, 0) == plain);
  const auto shuffled = run(0, true, 5, 0);
  CHECK(shuffled != plain);
  CHECK(std::multiset<uint64_t>(shuffled.begin(), shuffled.end()) ==
        std::multiset<uint64_t>(plain.begin(), plain.end()));
  CHECK(run(3, true, 5, 0) == shuffled);  // deterministic, whatever the threads
  CHECK(run(0, true, 5, 1) != shuffled);  // another epoch, another order
  CHECK(run(0, true, 6, 0) != shuffled);  // another seed, another order
  // skip() (resuming) lands where reading would have.
  auto o = options(7, 0, 1, 2, 64);
  train::TextBatchSource s(files, schema, o);
  s.start_epoch(0);
  s.skip(3);
  data::Batch b;
  REQUIRE(s.next(b));
  CHECK(b.sparse[0].keys.front() == plain[21]);
}

TEST_CASE("TextBatchSource: bad records fail with file:line, or are skipped and counted",
          "[data][files]") {
  test::TempDir dir;
  std::string text;
  for (int64_t k = 0; k < 30; ++k) {
    if (k == 12) text += "1\t0.5,0.5\tnot-an-id\t\n";
    else if (k == 20) text += "2\t0.5,0.5\t7\t\n";
    else if (k == 25) text += "0\t0.5\t7\t\n";
    else text += record(k);
  }
  const std::string path = dir.write("bad.tsv", text);
  const data::Schema schema = small_schema();
  // Fail (the default): the first bad record stops reading, naming the file and line — also
  // from a rank whose byte range starts in the middle of the file.
  {
    train::TextBatchSource s({path}, schema, options(4, 0, 1, 1, 50));
    CHECK_THAT(test::error_of([&] { read_all(s); }),
               Contains(path + ":13: column 'user' (field 3): 'not-an-id' is not a decimal uint64 "
                               "id"));
  }
  {  // rank 1 of 2 starts mid-file (record 15 or so): its first bad record is line 21
    train::TextBatchSource s({path}, schema, options(4, 1, 2, 1, 50));
    REQUIRE_FALSE(s.whole_files());
    CHECK_THAT(test::error_of([&] { read_all(s); }),
               Contains(path + ":21: column 'click' (field 1): '2' is out of range: a label must "
                               "be in [0, 1]"));
  }
  // Skip: counted per reason with file:line examples; the good records all arrive.
  auto o = options(4, 0, 1, 2, 50);
  o.on_bad_record = train::BadRecordPolicy::kSkip;
  train::TextBatchSource s({path}, schema, o);
  const Read r = read_all(s);
  CHECK(r.users.size() == 27);
  const auto& stats = s.bad_records();
  CHECK(stats.total == 3);
  CHECK(stats.per_reason.at("bad id") == 1);
  CHECK(stats.per_reason.at("label range") == 1);
  CHECK(stats.per_reason.at("dense count") == 1);
  CHECK_THAT(stats.examples.at("label range").at(0), Contains(path + ":21: column 'click'"));
  CHECK_THAT(stats.examples.at("dense count").at(0), Contains(path + ":26: column 'x'"));
  CHECK_THAT(s.epoch_report(), Contains("3 bad record(s) skipped") && Contains("1 × bad id"));
  // A new epoch counts afresh.
  read_all(s, 1);
  CHECK(s.bad_records().total == 3);
  // --max-bad-records.
  o.max_bad_records = 2;
  train::TextBatchSource limited({path}, schema, o);
  CHECK_THAT(test::error_of([&] { read_all(limited); }),
             Contains("more than 2 bad records on rank 0 in epoch 1") && Contains(path + ":26:"));
}

TEST_CASE("TextBatchSource reports unreadable files at construction", "[data][files]") {
  test::TempDir dir;
  const data::Schema schema = small_schema();
  CHECK_THAT(test::error_of([&] {
               train::TextBatchSource s({dir.file("missing.tsv")}, schema, options(4));
             }),
             Contains(dir.file("missing.tsv")));
}

TEST_CASE("Cache files: text -> cache -> batches identical; blocks read once across 1-4 ranks",
          "[data][files][cache]") {
  test::TempDir dir;
  const auto files = write_files(dir, {17, 0, 40, 9, 33});
  const data::Schema schema = small_schema();
  // The text, batch by batch (one rank), written into two caches with small blocks.
  const Read text = [&] {
    train::TextBatchSource s(files, schema, options(8));
    return read_all(s);
  }();
  std::vector<std::string> caches;
  {
    data::CacheWriterOptions co;
    co.block_records = 7;
    data::CacheWriter a(dir.file("a.cache"), schema, co), b(dir.file("b.cache"), schema, co);
    for (size_t i = 0; i < text.batches.size(); ++i)
      (i < 5 ? a : b).append(text.batches[i]);
    a.finish();
    b.finish();
    caches = {dir.file("a.cache"), dir.file("b.cache")};
  }
  CHECK(train::is_cache_file(caches[0]));
  CHECK_FALSE(train::is_cache_file(files[0]));
  // One rank, same batch size: the identical batches, sample ids included.
  {
    train::CacheBatchSource c(caches, options(8));
    CHECK(c.schema() == schema);
    CHECK(c.records() == static_cast<int64_t>(text.users.size()));
    const Read r = read_all(c);
    REQUIRE(r.batches.size() == text.batches.size());
    for (size_t i = 0; i < r.batches.size(); ++i) {
      const auto& x = r.batches[i];
      const auto& y = text.batches[i];
      CHECK(x.labels == y.labels);
      CHECK(x.dense == y.dense);
      CHECK(x.sample_ids == y.sample_ids);
      for (size_t s = 0; s < x.sparse.size(); ++s) {
        CHECK(x.sparse[s].keys == y.sparse[s].keys);
        CHECK(x.sparse[s].offsets == y.sparse[s].offsets);
      }
    }
  }
  // Several ranks: every record once; batch order independent of workers; shuffle seeded.
  for (int ranks = 1; ranks <= 4; ++ranks) {
    std::multiset<uint64_t> seen;
    for (int r = 0; r < ranks; ++r) {
      train::CacheBatchSource c(caches, options(5, r, ranks, r % 3));
      const Read read = read_all(c);
      CHECK(static_cast<int64_t>(read.ids.size()) == c.share_records());
      seen.insert(read.ids.begin(), read.ids.end());
    }
    CHECK(seen == std::multiset<uint64_t>(text.ids.begin(), text.ids.end()));
  }
  auto o = options(5, 0, 1, 2);
  o.shuffle = true;
  o.shuffle_seed = 3;
  o.shuffle_buffer = 10;
  train::CacheBatchSource s1(caches, o), s2(caches, o);
  const auto a = read_all(s1).ids, b = read_all(s2).ids;
  CHECK(a == b);
  CHECK(a != text.ids);
  CHECK(std::multiset<uint64_t>(a.begin(), a.end()) ==
        std::multiset<uint64_t>(text.ids.begin(), text.ids.end()));
  // Vocabularies over both files: the distinct users.
  std::vector<uint64_t> users;
  REQUIRE(s1.vocabulary(0, users));
  std::set<uint64_t> distinct(text.users.begin(), text.users.end());
  CHECK(users == std::vector<uint64_t>(distinct.begin(), distinct.end()));
}

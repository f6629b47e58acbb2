#include <catch2/catch.hpp>

#define XXH_INLINE_ALL  // an independent (header-only) xxHash for the expected values
#include <xxhash.h>

#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

// label, dense(2), user (sparse), hist_items (sequence, max_len 3), note (ignore), tags (sparse)
Schema small_schema() {
  return Schema({Column::label("click"), Column::dense("dense", 2), Column::sparse("user"),
                 Column::sequence("hist_items", 3), Column::ignore("note"),
                 Column::sparse("tags")});
}

// n valid records of small_schema; record i has user id 100 + i.
std::string valid_records(int n) {
  std::string out;
  for (int i = 0; i < n; ++i)
    out += std::to_string(i % 2) + "\t0.5,-1\t" + std::to_string(100 + i) + "\t1,2\tx\t\n";
  return out;
}

}  // namespace

TEST_CASE("TextReader parses every column kind as documented", "[data][text]") {
  test::TempDir dir;
  const std::string path = dir.write(
      "train.tsv",
      "1\t0.5,-2.25\t42\t7,8,9,10,11\tfree text, with commas\t3,1,3\n"  // sequence cut to last 3
      "0\t1e-3,0\t18446744073709551615\t\t\t\n"                         // empty fields: no ids
      "0.25\t-0,3\t0\t5\tz\t9\r\n");                                    // CRLF, soft label
  const Batch b = read_text(path, small_schema());
  REQUIRE(b.size == 3);
  CHECK(b.labels == std::vector<float>{1.0f, 0.0f, 0.25f});
  CHECK(b.dense == std::vector<float>{0.5f, -2.25f, 1e-3f, 0.0f, -0.0f, 3.0f});
  CHECK(std::signbit(b.dense[4]));
  CHECK(b.sample_ids == std::vector<uint64_t>{0, 1, 2});
  REQUIRE(b.sparse.size() == 3);
  CHECK(test::ids_of(b.sparse[0], 0) == std::vector<uint64_t>{42});
  CHECK(test::ids_of(b.sparse[0], 1) == std::vector<uint64_t>{18446744073709551615ULL});
  CHECK(test::ids_of(b.sparse[1], 0) == std::vector<uint64_t>{9, 10, 11});  // most recent 3
  CHECK(test::ids_of(b.sparse[1], 1).empty());
  CHECK(test::ids_of(b.sparse[1], 2) == std::vector<uint64_t>{5});
  CHECK(test::ids_of(b.sparse[2], 0) == std::vector<uint64_t>{3, 1, 3});  // order and repeats kept
  CHECK(test::ids_of(b.sparse[2], 1).empty());
  CHECK(b.sparse[2].offsets == std::vector<int64_t>{0, 3, 3, 4});
}

TEST_CASE("hashed columns hash each token with the column's seed", "[data][text]") {
  test::TempDir dir;
  const Schema s(
      {Column::label("y"), Column::sparse("query", true), Column::sequence("clicks", 4, true)});
  const std::string path = dir.write("h.tsv", "1\tred shoes,42\tabc,abc\n0\t\t\n");
  const Batch b = read_text(path, s);
  REQUIRE(b.size == 2);
  const uint64_t q = XXH64("query", 5, 0), c = XXH64("clicks", 6, 0);
  CHECK(test::ids_of(b.sparse[0], 0) ==
        std::vector<uint64_t>{XXH64("red shoes", 9, q), XXH64("42", 2, q)});
  CHECK(test::ids_of(b.sparse[1], 0) ==
        std::vector<uint64_t>{XXH64("abc", 3, c), XXH64("abc", 3, c)});
  CHECK(test::ids_of(b.sparse[0], 1).empty());
  // A hashed batch cannot be written back (the strings are gone).
  REQUIRE_THROWS_WITH(write_text(dir.file("out.tsv"), s, b),
                      Contains("column 'query'") && Contains("hash = false"));
  CHECK_FALSE(std::filesystem::exists(dir.file("out.tsv")));
}

TEST_CASE("generate -> write_text -> TextReader gives the identical batch", "[data][text]") {
  test::TempDir dir;
  SyntheticConfig config = SyntheticConfig::demo();
  config.seed = 11;
  const SyntheticGenerator gen(config);
  const Batch original = gen.generate(0, 2000);
  const std::string path = dir.file("train.tsv");
  write_text(path, gen.schema(), original);
  CHECK(dir.entries() == std::vector<std::string>{"train.tsv"});  // no temporary left behind

  const Schema schema = Schema::load([&] {
    gen.schema().save(dir.file("schema.toml"));
    return dir.file("schema.toml");
  }());
  REQUIRE(schema == gen.schema());
  TextReader reader(path, schema);
  Batch all, part;
  while (reader.next(part, 333)) test::append_batch(all, part);
  test::require_same_batch(all, original, "read back");
  CHECK(reader.records_returned() == 2000);
  CHECK(reader.lines_read() == 2000);
}

TEST_CASE("write_text round-trips extreme values exactly", "[data][text]") {
  const Schema s({Column::label("y"), Column::dense("d", 4), Column::sequence("seq", 3),
                  Column::ignore("skip"), Column::sparse("ids")});
  Batch b = make_empty_batch(s);
  b.size = 3;
  b.labels = {0.0f, 1.0f, 1.0f / 3.0f};
  b.sample_ids = {0, 1, 2};
  const float tiny = std::numeric_limits<float>::denorm_min();
  b.dense = {tiny,
             -0.0f,
             std::numeric_limits<float>::max(),
             0.1f,
             -std::numeric_limits<float>::min(),
             1.0f / 3.0f,
             16777217.0f,
             -1e-30f,
             123456.789f,
             2.5f,
             -7.0f,
             1e30f};
  b.sparse[0].offsets = {0, 3, 3, 4};
  b.sparse[0].keys = {0, 18446744073709551615ULL, 5, 12345678901234567890ULL};
  b.sparse[1].offsets = {0, 0, 2, 5};
  b.sparse[1].keys = {1, 1, 4, 3, 2};

  std::ostringstream text;
  write_text(text, s, b);
  test::TempDir dir;
  const std::string path = dir.write("x.tsv", text.str());
  Batch back = read_text(path, s);
  test::require_same_batch(back, b, "extreme values");
}

TEST_CASE("parse_text reads text in memory exactly as read_text reads the file", "[data][text]") {
  test::TempDir dir;
  const std::string text = valid_records(5) + "1\t0,0\t7\t\t\t1,2";  // no final newline
  const Batch from_file = read_text(dir.write("train.tsv", text), small_schema());
  REQUIRE(from_file.size == 6);
  test::require_same_batch(parse_text(text, small_schema(), "mem"), from_file, "parse_text");
  CHECK(parse_text("", small_schema()).size == 0);
  CHECK_THROWS_WITH(parse_text(valid_records(2) + "1\t0.5\t1\t\t\t\n", small_schema(), "mem"),
                    Contains("mem:3: column 'dense' (field 2)"));
  CHECK_THROWS_WITH(parse_text("1", Schema(), "mem"), Contains("the schema has no columns"));
}

TEST_CASE("TextReader streams batches of at most max_batch records", "[data][text]") {
  test::TempDir dir;
  const std::string path = dir.write("train.tsv", valid_records(10));
  TextReader reader(path, small_schema(), 0, 1, /*first_sample_id=*/1000);
  Batch b;
  std::vector<int64_t> sizes;
  std::vector<uint64_t> ids;
  while (reader.next(b, 3)) {
    sizes.push_back(b.size);
    ids.insert(ids.end(), b.sample_ids.begin(), b.sample_ids.end());
    REQUIRE_NOTHROW(check_batch(small_schema(), b));
    for (int64_t i = 0; i < b.size; ++i) {
      CHECK(test::ids_of(b.sparse[0], i) == std::vector<uint64_t>{b.sample_ids[i] - 1000 + 100});
    }
  }
  CHECK(sizes == std::vector<int64_t>{3, 3, 3, 1});
  CHECK(ids == std::vector<uint64_t>{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009});
  CHECK(b.size == 0);
  CHECK_FALSE(reader.next(b, 3));  // stays exhausted

  // A file without a final newline and an empty file.
  const std::string no_newline = dir.write("nonl.tsv", "1\t1,2\t5\t\t\t");
  CHECK(read_text(no_newline, small_schema()).size == 1);
  const std::string empty = dir.write("empty.tsv", "");
  TextReader empty_reader(empty, small_schema());
  CHECK_FALSE(empty_reader.next(b, 5));
}

TEST_CASE("TextReader shards return every record exactly once", "[data][text]") {
  test::TempDir dir;
  const int records = 23;
  const std::string path = dir.write("train.tsv", valid_records(records));
  for (const int64_t shards : {1, 2, 3, 7, 23, 40}) {
    INFO("num_shards " << shards);
    std::multiset<uint64_t> seen;
    for (int64_t shard = 0; shard < shards; ++shard) {
      TextReader reader(path, small_schema(), shard, shards);
      Batch b;
      while (reader.next(b, 4)) {
        for (int64_t i = 0; i < b.size; ++i) {
          const uint64_t id = b.sample_ids[i];
          CHECK(static_cast<int64_t>(id % shards) == shard);
          // The record really is line id + 1: its user column holds 100 + id.
          CHECK(test::ids_of(b.sparse[0], i) == std::vector<uint64_t>{100 + id});
          seen.insert(id);
        }
      }
    }
    REQUIRE(seen.size() == static_cast<size_t>(records));
    for (uint64_t id = 0; id < static_cast<uint64_t>(records); ++id) CHECK(seen.count(id) == 1);
  }
}

TEST_CASE("TextReader errors name the file, line, column and token", "[data][text]") {
  test::TempDir dir;
  // Lines 1 and 2 are valid; line 3 gets the fault.
  auto read_with_line3 = [&](const std::string& line3) {
    const std::string path =
        dir.write("train.tsv", valid_records(2) + line3 + "\n" + valid_records(1));
    return read_text(path, small_schema());
  };
  REQUIRE(read_with_line3("1\t0,0\t5\t1\t\t2").size == 4);

  SECTION("bad ids") {
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\t1,x12,3\t\t"),
                        Contains("train.tsv:3: column 'hist_items' (field 4): 'x12' is not a "
                                 "decimal uint64 id"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t-5\t\t\t"),
                        Contains("train.tsv:3: column 'user' (field 3): '-5' is not a decimal"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t+5\t\t\t"), Contains("'+5' is not a decimal"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t 5\t\t\t"), Contains("' 5' is not a decimal"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t18446744073709551616\t\t\t"),
                        Contains("train.tsv:3: column 'user' (field 3): '18446744073709551616' "
                                 "is out of range for a uint64 id"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\t\t\t1,,2"),
                        Contains("train.tsv:3: column 'tags' (field 6): empty id in '1,,2'"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\t\t\t1,"), Contains("empty id in '1,'"));
  }
  SECTION("wrong field count") {
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\t\t"),
                        Contains("train.tsv:3: expected 6 tab-separated fields (one per schema "
                                 "column), found 5"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\t\t\t\t"), Contains("found 7"));
    REQUIRE_THROWS_WITH(read_with_line3(""),
                        Contains("train.tsv:3: expected 6") && Contains("found 1"));
  }
  SECTION("bad labels") {
    REQUIRE_THROWS_WITH(read_with_line3("2\t0,0\t5\t\t\t"),
                        Contains("train.tsv:3: column 'click' (field 1): '2' is out of range: a "
                                 "label must be in [0, 1]"));
    REQUIRE_THROWS_WITH(read_with_line3("-0.5\t0,0\t5\t\t\t"), Contains("'-0.5' is out of range"));
    REQUIRE_THROWS_WITH(read_with_line3("yes\t0,0\t5\t\t\t"),
                        Contains("column 'click' (field 1): 'yes' is not a number"));
    REQUIRE_THROWS_WITH(read_with_line3("\t0,0\t5\t\t\t"), Contains("'' is not a number"));
  }
  SECTION("bad dense values") {
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0,0\t5\t\t\t"),
                        Contains("train.tsv:3: column 'dense' (field 2): expected 2 "
                                 "comma-separated values (dim), found 3"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t\t5\t\t\t"),
                        Contains("expected 2") && Contains("found 0"));
    REQUIRE_THROWS_WITH(
        read_with_line3("1\t0,nan\t5\t\t\t"),
        Contains("train.tsv:3: column 'dense' (field 2): 'nan' is not a finite number"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t-inf,0\t5\t\t\t"), Contains("'-inf' is not a finite"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t1e50,0\t5\t\t\t"),
                        Contains("'1e50' is out of the float range"));
    REQUIRE_THROWS_WITH(read_with_line3("1\t0.5x,0\t5\t\t\t"), Contains("'0.5x' is not a number"));
  }
  SECTION("non-printable bytes are escaped in messages") {
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t5\x01\xff\t\t\t"),
                        Contains("train.tsv:3: column 'user' (field 3): '5\\x01\\xff' is not a "
                                 "decimal uint64 id"));
  }
  SECTION("long tokens are shortened in messages") {
    const std::string token(500, 'z');
    REQUIRE_THROWS_WITH(read_with_line3("1\t0,0\t" + token + "\t\t\t"),
                        Contains("(500 characters) is not a decimal uint64 id"));
  }
}

TEST_CASE("a shard reader skips other shards' records without parsing them", "[data][text]") {
  test::TempDir dir;
  const std::string path =
      dir.write("train.tsv", valid_records(2) + "garbage\n" + valid_records(2));
  // Line 3 is record 2: shard 0 of 2 owns it, shard 1 never parses it.
  TextReader odd(path, small_schema(), 1, 2);
  Batch b;
  REQUIRE(odd.next(b, 100));
  CHECK(b.sample_ids == std::vector<uint64_t>{1, 3});
  TextReader even(path, small_schema(), 0, 2);
  REQUIRE_THROWS_WITH(even.next(b, 100), Contains("train.tsv:3: expected 6"));
}

TEST_CASE("TextReader rejects bad arguments and unreadable files", "[data][text]") {
  test::TempDir dir;
  const std::string missing = dir.file("nope.tsv");
  REQUIRE_THROWS_WITH(TextReader(missing, small_schema()),
                      Contains("cannot open '" + missing + "' for reading: No such file"));
  Batch b;
  auto read_directory = [&] {  // a directory opens, but cannot be read as records
    TextReader reader(dir.path().string(), small_schema());
    reader.next(b, 1);
  };
  REQUIRE_THROWS_WITH(read_directory(), Contains(dir.path().string() + ":1: read error"));
  const std::string path = dir.write("t.tsv", valid_records(1));
  REQUIRE_THROWS_WITH(TextReader(path, small_schema(), 2, 2),
                      Contains("shard = 2 is out of range: must be in [0, 1]"));
  REQUIRE_THROWS_WITH(TextReader(path, small_schema(), 0, 0),
                      Contains("num_shards = 0 is out of range"));
  TextReader reader(path, small_schema());
  REQUIRE_THROWS_WITH(reader.next(b, 0), Contains("max_batch = 0 is out of range"));
}

TEST_CASE("write_text refuses batches it could not read back", "[data][text]") {
  test::TempDir dir;
  const Schema s = small_schema();
  Batch b = make_empty_batch(s);
  b.size = 1;
  b.labels = {1.0f};
  b.sample_ids = {0};
  b.dense = {1.0f, 2.0f};
  b.sparse[0].offsets = {0, 1};
  b.sparse[0].keys = {5};
  b.sparse[1].offsets = {0, 4};
  b.sparse[1].keys = {1, 2, 3, 4};
  b.sparse[2].offsets = {0, 0};
  const std::string path = dir.file("out.tsv");
  REQUIRE_THROWS_WITH(write_text(path, s, b),
                      Contains("column 'hist_items' holds 4 ids but max_len = 3"));
  b.sparse[1].offsets = {0, 3};
  b.sparse[1].keys = {1, 2, 3};
  b.dense[1] = std::nanf("");
  REQUIRE_THROWS_WITH(write_text(path, s, b), Contains("column 'dense' value 1 is nan"));
  b.dense[1] = 2.0f;
  b.labels.clear();
  REQUIRE_THROWS_WITH(write_text(path, s, b), Contains("labels has 0 values for 1 samples"));
  CHECK(dir.entries().empty());  // nothing written, no temporary left
  b.labels = {1.0f};
  write_text(path, s, b);
  CHECK(dir.entries() == std::vector<std::string>{"out.tsv"});
  // The destination directory must exist; the failure names the path.
  REQUIRE_THROWS_WITH(write_text(dir.file("no/such/dir/out.tsv"), s, b),
                      Contains("no/such/dir") && Contains("No such file"));
}

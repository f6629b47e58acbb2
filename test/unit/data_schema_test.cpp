#include <catch2/catch.hpp>

#define XXH_INLINE_ALL  // an independent (header-only) xxHash for the expected values
#include <xxhash.h>

#include <string>
#include <vector>

#include "data_test_util.h"
#include "lockstep/core/error.h"
#include "lockstep/data/schema.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

// Joins lines with "\n": line k of the result is lines[k - 1], so tests can name line numbers.
std::string lines(const std::vector<std::string>& ls) {
  std::string out;
  for (const auto& l : ls) out += l + "\n";
  return out;
}

// A valid schema's TOML lines; tests append or edit lines to break it.
std::vector<std::string> valid_lines() {
  return {
      "# a comment",          // 1
      "[[column]]",           // 2
      "name = \"click\"",     // 3
      "kind = \"label\"",     // 4
      "",                     // 5
      "[[column]]",           // 6
      "name = \"hist\"",      // 7
      "kind = \"sequence\"",  // 8
      "max_len = 50",         // 9
      "",                     // 10
      "[[column]]",           // 11
      "name = \"dense\"",     // 12
      "kind = \"dense\"",     // 13
      "dim = 4",              // 14
  };
}

}  // namespace

TEST_CASE("Schema maps columns onto Batch slots and dense offsets", "[data][schema]") {
  const Schema s({Column::dense("d1", 3), Column::sparse("a"), Column::ignore("x"),
                  Column::label("y"), Column::sequence("hist", 5), Column::dense("d2", 2),
                  Column::sparse("b", /*hash=*/true)});
  CHECK(s.num_columns() == 7);
  CHECK(s.label_column() == 3);
  CHECK(s.num_dense() == 5);
  CHECK(s.num_sparse() == 3);
  CHECK(s.dense_offset(0) == 0);
  CHECK(s.dense_offset(5) == 3);
  CHECK(s.dense_offset(1) == -1);
  CHECK(s.sparse_slot(1) == 0);
  CHECK(s.sparse_slot(4) == 1);
  CHECK(s.sparse_slot(6) == 2);
  CHECK(s.sparse_slot(2) == -1);
  CHECK(s.sparse_slot(3) == -1);
  CHECK(s.sparse_columns() == std::vector<int64_t>{1, 4, 6});
  CHECK(s.find("hist") == 4);
  CHECK(s.find("nope") == -1);
  CHECK_THROWS_WITH(s.sparse_slot(7), Contains("column = 7 is out of range"));

  const Batch empty = make_empty_batch(s);
  CHECK(empty.size == 0);
  CHECK(empty.sparse.size() == 3);
  CHECK_NOTHROW(check_batch(s, empty));
}

TEST_CASE("Schema TOML round trip through text and files", "[data][schema]") {
  const Schema s({Column::label("click"), Column::dense("dense", 8), Column::sparse("user"),
                  Column::sparse("tags", true), Column::sequence("hist", 50),
                  Column::sequence("hist_q", 7, true), Column::ignore("comment")});
  const Schema back = Schema::parse(s.to_toml(), "round.toml");
  CHECK(back == s);
  CHECK(back.columns()[3].hash);
  CHECK(back.columns()[5].max_len == 7);

  test::TempDir dir;
  const std::string path = dir.file("schema.toml");
  s.save(path);
  CHECK(Schema::load(path) == s);
  CHECK(dir.entries() == std::vector<std::string>{"schema.toml"});  // no temporary left
  // A different schema is not equal.
  CHECK(Schema({Column::label("click"), Column::dense("dense", 7)}) !=
        Schema({Column::label("click"), Column::dense("dense", 8)}));
}

TEST_CASE("Schema TOML defaults and comments", "[data][schema]") {
  const Schema s = Schema::parse(
      lines({"# header", "[[column]]", "name = \"y\"", "kind = \"label\"  # trailing comment",
             "[[column]]", "name = \"price\"", "kind = \"dense\""}),
      "s.toml");
  REQUIRE(s.num_columns() == 2);
  CHECK(s.columns()[1].dim == 1);  // dense without dim has one value
  CHECK(s.num_dense() == 1);
}

TEST_CASE("hashed columns use XXH64 seeded with XXH64 of the column name", "[data][schema]") {
  // Known answer from the xxHash specification: XXH64 of the empty input with seed 0.
  CHECK(hash_token("", 0) == 0xEF46DB3751D8E999ULL);
  const Column c = Column::sparse("query", true);
  const uint64_t seed = XXH64("query", 5, 0);
  CHECK(c.hash_seed() == seed);
  CHECK(hash_token("apple", c.hash_seed()) == XXH64("apple", 5, seed));
  CHECK(Column::sparse("title", true).hash_seed() != seed);
}

TEST_CASE("Schema TOML errors name the file, the line and the field", "[data][schema]") {
  auto parse_with = [](std::vector<std::string> ls) {
    return Schema::parse(lines(ls), "schema.toml");
  };
  REQUIRE_NOTHROW(parse_with(valid_lines()));

  SECTION("max_len out of range") {
    auto ls = valid_lines();
    ls[8] = "max_len = 0";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:9: column 'hist' field 'max_len' = 0 "
                                                 "is out of range: must be in [1, 100000]"));
  }
  SECTION("dim out of range") {
    auto ls = valid_lines();
    ls[13] = "dim = 70000";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:14: column 'dense' field 'dim' = "
                                                 "70000 is out of range: must be in [1, 65536]"));
  }
  SECTION("a field that does not apply to the kind") {
    auto ls = valid_lines();
    ls.insert(ls.begin() + 8, "dim = 3");  // line 9, inside the sequence column
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:9: column 'hist' field 'dim' "
                                                 "applies only to kind 'dense'"));
    auto hashed_dense = valid_lines();
    hashed_dense.push_back("hash = true");  // line 15, in the dense column
    REQUIRE_THROWS_WITH(parse_with(hashed_dense),
                        Contains("schema.toml:15: column 'dense' field 'hash' applies only"));
    auto max_len_on_label = valid_lines();
    max_len_on_label.insert(max_len_on_label.begin() + 4, "max_len = 3");  // line 5
    REQUIRE_THROWS_WITH(parse_with(max_len_on_label),
                        Contains("schema.toml:5: column 'click' field 'max_len' applies only"));
  }
  SECTION("unknown kind") {
    auto ls = valid_lines();
    ls[7] = "kind = \"seq\"";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:8: column 'hist' field 'kind' = "
                                                 "'seq' is not a kind") &&
                                            Contains("label, dense, sparse, sequence or ignore"));
  }
  SECTION("duplicate names") {
    auto ls = valid_lines();
    ls[11] = "name = \"hist\"";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:12: column 'hist' is defined twice "
                                                 "(columns 2 and 3)"));
  }
  SECTION("no label") {
    auto ls = valid_lines();
    ls[3] = "kind = \"ignore\"";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml: no column has kind 'label'"));
  }
  SECTION("two labels") {
    auto ls = valid_lines();
    ls[12] = "kind = \"label\"";
    ls.erase(ls.begin() + 13);  // drop dim
    REQUIRE_THROWS_WITH(parse_with(ls),
                        Contains("schema.toml:13: column 'dense' field 'kind' = 'label' makes "
                                 "it a second label column (the first is "
                                 "'click')"));
  }
  SECTION("unknown field") {
    auto ls = valid_lines();
    ls[8] = "maxlen = 50";
    REQUIRE_THROWS_WITH(parse_with(ls),
                        Contains("schema.toml:9: column 'hist' has an unknown field 'maxlen'"));
  }
  SECTION("wrong types") {
    auto ls = valid_lines();
    ls[13] = "dim = \"4\"";
    REQUIRE_THROWS_WITH(parse_with(ls),
                        Contains("schema.toml:14: column 'dense' field 'dim' must be "
                                 "an integer, not a string"));
    auto hash_text = valid_lines();
    hash_text.push_back("hash = 1");
    REQUIRE_THROWS_WITH(parse_with(hash_text),
                        Contains("schema.toml:15: column 'dense' field 'hash' must be a boolean"));
    auto name_int = valid_lines();
    name_int[6] = "name = 7";
    REQUIRE_THROWS_WITH(parse_with(name_int),
                        Contains("schema.toml:7: column 2 field 'name' must be a string"));
  }
  SECTION("missing name, kind or max_len") {
    auto no_name = valid_lines();
    no_name.erase(no_name.begin() + 6);
    REQUIRE_THROWS_WITH(parse_with(no_name),
                        Contains("schema.toml:6: column 2 has no field 'name'"));
    auto no_kind = valid_lines();
    no_kind.erase(no_kind.begin() + 7);
    REQUIRE_THROWS_WITH(parse_with(no_kind),
                        Contains("schema.toml:6: column 'hist' has no field 'kind'"));
    auto no_max_len = valid_lines();
    no_max_len.erase(no_max_len.begin() + 8);
    REQUIRE_THROWS_WITH(parse_with(no_max_len),
                        Contains("schema.toml:6: column 'hist' (kind 'sequence') has no field "
                                 "'max_len'"));
  }
  SECTION("bad names") {
    auto ls = valid_lines();
    ls[6] = "name = \"his t\"";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:7: column 2 field 'name' = 'his t' "
                                                 "is not a valid name"));
    ls[6] = "name = \"\"";
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:7: column 2 field 'name' = ''"));
  }
  SECTION("TOML syntax error") {
    auto ls = valid_lines();
    ls[8] = "max_len = = 50";
    REQUIRE_THROWS_WITH(parse_with(ls),
                        Contains("schema.toml:9:") && Contains("TOML syntax error"));
  }
  SECTION("unknown top-level key and a non-table 'column'") {
    auto ls = valid_lines();
    ls.insert(ls.begin(), "version = 2");
    REQUIRE_THROWS_WITH(parse_with(ls), Contains("schema.toml:1: unknown top-level key 'version'"));
    REQUIRE_THROWS_WITH(parse_with({"", "column = 3"}),
                        Contains("schema.toml:2: 'column' must be written as [[column]] tables"));
    REQUIRE_THROWS_WITH(parse_with({"# nothing"}), Contains("schema.toml: no [[column]] tables"));
  }
}

TEST_CASE("Schema::load names an unreadable file", "[data][schema]") {
  test::TempDir dir;
  const std::string missing = dir.file("missing.toml");
  REQUIRE_THROWS_WITH(
      Schema::load(missing),
      Contains("cannot open schema file '" + missing + "'") && Contains("No such file"));
  const std::string bad = dir.write("bad.toml", lines({"[[column]]", "name = \"y\"", "kind = 3"}));
  REQUIRE_THROWS_WITH(Schema::load(bad),
                      Contains(bad + ":3: column 'y' field 'kind' must be a string"));
}

TEST_CASE("Schema built in code is validated too", "[data][schema]") {
  REQUIRE_THROWS_WITH(
      Schema({Column::label("y"), Column::dense("d", 0)}),
      Contains("column 'd' field 'dim' = 0 is out of range: must be in [1, 65536]"));
  REQUIRE_THROWS_WITH(Schema({Column::label("y"), Column::sequence("s", 100001)}),
                      Contains("column 's' field 'max_len' = 100001 is out of range"));
  REQUIRE_THROWS_WITH(Schema({Column::sparse("a")}), Contains("no column has kind 'label'"));
  REQUIRE_THROWS_WITH(Schema({Column::label("a"), Column::sparse("a")}),
                      Contains("column 'a' is defined twice (columns 1 and 2)"));
  REQUIRE_THROWS_WITH(Schema(std::vector<Column>{}), Contains("the schema has no columns"));
  Column c = Column::sparse("x");
  c.max_len = 4;
  REQUIRE_THROWS_WITH(Schema({Column::label("y"), c}),
                      Contains("column 'x' field 'max_len' applies only to kind 'sequence'"));
}

TEST_CASE("check_batch rejects batches that do not match the schema", "[data][schema]") {
  const Schema s({Column::label("y"), Column::dense("d", 2), Column::sparse("a")});
  Batch b = make_empty_batch(s);
  b.size = 2;
  b.labels = {0.0f, 1.0f};
  b.sample_ids = {0, 1};
  b.dense = {1, 2, 3, 4};
  b.sparse[0].offsets = {0, 1, 3};
  b.sparse[0].keys = {7, 8, 9};
  REQUIRE_NOTHROW(check_batch(s, b));

  Batch bad = b;
  bad.labels.pop_back();
  CHECK_THROWS_WITH(check_batch(s, bad, "mine"),
                    Contains("mine: labels has 1 values for 2 samples"));
  bad = b;
  bad.dense.push_back(5);
  CHECK_THROWS_WITH(check_batch(s, bad), Contains("dense has 5 values"));
  bad = b;
  bad.sparse[0].offsets = {0, 2, 1};
  CHECK_THROWS_WITH(check_batch(s, bad), Contains("column 'a' offsets decrease at sample 1"));
  bad = b;
  bad.sparse[0].keys.pop_back();
  CHECK_THROWS_WITH(check_batch(s, bad), Contains("column 'a' offsets end at 3 but it has 2 keys"));
  bad = b;
  bad.labels[1] = 1.5f;
  CHECK_THROWS_WITH(check_batch(s, bad), Contains("label of sample 1 = 1.5 is outside [0, 1]"));
  bad = b;
  bad.sparse.clear();
  CHECK_THROWS_WITH(check_batch(s, bad), Contains("0 sparse columns; the schema has 1"));
}

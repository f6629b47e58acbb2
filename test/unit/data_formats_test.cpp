// Record formats of a schema's [format] table (tsv, csv with a header and quotes, libsvm, libfm),
// dense missing values, clipping and transforms, the criteo preset, and a test per bad-record
// reason naming the file and line.
#include <cmath>

#include "data_test_util.h"
#include "lockstep/data/text_format.h"
#include "lockstep/train/batch_source.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

std::vector<uint64_t> keys_of(const data::Batch& b, size_t slot, int64_t row) {
  const auto& c = b.sparse[slot];
  return {c.keys.begin() + c.offsets[row], c.keys.begin() + c.offsets[row + 1]};
}

const char* kCsvSchema = R"(
[format]
kind = "csv"
id_separator = "|"

[[column]]
name = "clicked"
kind = "label"

[[column]]
name = "price"
kind = "dense"
missing = -1
clip = [0, 100]
transform = "log1p"

[[column]]
name = "tags"
kind = "sparse"
hash = true

[[column]]
name = "hist"
kind = "sequence"
max_len = 2
)";

}  // namespace

TEST_CASE("Schema [format] and dense options round-trip through TOML", "[data][formats]") {
  const data::Schema s = data::Schema::parse(kCsvSchema, "csv.toml");
  CHECK(s.format().kind == data::FormatKind::kCsv);
  CHECK(s.format().separator == ',');
  CHECK(s.format().header);
  CHECK(s.format().quotes);
  CHECK(s.format().id_separator == '|');
  const data::Column& price = s.columns()[1];
  CHECK(price.has_missing);
  CHECK(price.missing == -1.0f);
  CHECK(price.clip_min == 0.0f);
  CHECK(price.clip_max == 100.0f);
  CHECK(price.transform == data::Transform::kLog1p);
  CHECK(data::Schema::parse(s.to_toml(), "again") == s);
  const data::Schema criteo = data::Schema::preset("criteo");
  CHECK(criteo.num_columns() == 40);
  CHECK(criteo.num_dense() == 13);
  CHECK(criteo.num_sparse() == 26);
  CHECK(data::Schema::parse(criteo.to_toml(), "criteo") == criteo);
  CHECK_THAT(test::error_of([] { data::Schema::preset("avazu"); }),
             Contains("'avazu' is not a schema preset"));
}

TEST_CASE("Schema [format] errors name the file, line and field", "[data][formats]") {
  const std::string cols = "\n[[column]]\nname = \"y\"\nkind = \"label\"\n\n[[column]]\nname = "
                           "\"a\"\nkind = \"sparse\"\n";
  auto error = [&](const std::string& text) {
    return test::error_of([&] { data::Schema::parse(text, "s.toml"); });
  };
  CHECK_THAT(error("[format]\nkind = \"parquet\"\n" + cols),
             Contains("s.toml:2: format field 'kind' = 'parquet' is not a format"));
  CHECK_THAT(error("[format]\nseparator = \"ab\"\n" + cols),
             Contains("s.toml:2: format field 'separator' must be a one-character string"));
  CHECK_THAT(error("[format]\nheaders = true\n" + cols),
             Contains("s.toml:2: format has an unknown field 'headers'"));
  CHECK_THAT(error("[format]\nkind = \"csv\"\nquotes = false\n" + cols),
             Contains("s.toml:1: format: separator and id_separator are both ','"));
  CHECK_THAT(error("[format]\nkind = \"libsvm\"\n" + cols +
                   "\n[[column]]\nname = \"b\"\nkind = \"sparse\"\n"),
             Contains("format kind 'libsvm' feeds every id:value pair to one feature column"));
  CHECK_THAT(error(cols + "transform = \"log1p\"\n"),
             Contains("s.toml:9: column 'a' field 'transform' applies only to kind 'dense'"));
  CHECK_THAT(error(cols + "\n[[column]]\nname = \"d\"\nkind = \"dense\"\ntransform = \"log\"\n"),
             Contains("s.toml:13: column 'd' field 'transform' = 'log' is not a transform"));
  CHECK_THAT(error(cols + "\n[[column]]\nname = \"d\"\nkind = \"dense\"\nclip = [3, 1]\n"),
             Contains("s.toml:13: column 'd' field 'clip' = [3, 1] is not a range"));
  CHECK_THAT(error(cols + "\n[[column]]\nname = \"d\"\nkind = \"dense\"\ntransform = \"log1p\"\n"),
             Contains("s.toml:13: column 'd' field 'transform' = 'log1p' needs values > -1"));
  CHECK_THAT(error(cols + "\n[[column]]\nname = \"d\"\nkind = \"dense\"\nclip = 3\n"),
             Contains("s.toml:13: column 'd' field 'clip' must be an array of two numbers"));
}

TEST_CASE("CSV: header matched by name, quotes, missing values, clip and log1p", "[data][formats]") {
  const data::Schema s = data::Schema::parse(kCsvSchema, "csv.toml");
  // The file orders fields its own way and has one the schema does not name.
  const std::string text =
      "hist,extra,tags,clicked,price\n"
      "1|2|3,\"free, text\",red|blue,1,3\n"
      "\"\",x,\"say \"\"hi\"\"\",0,\n"
      "7,,,1,1000\r\n";
  const data::Batch b = data::parse_text(text, s, "ads.csv");
  REQUIRE(b.size == 3);
  CHECK(b.labels == std::vector<float>{1, 0, 1});
  CHECK(b.dense[0] == std::log1p(3.0f));
  CHECK(b.dense[1] == std::log1p(0.0f));  // missing -1, clipped to 0
  CHECK(b.dense[2] == std::log1p(100.0f));  // clipped to 100
  const uint64_t seed = s.columns()[2].hash_seed();
  CHECK(keys_of(b, 0, 0) ==
        std::vector<uint64_t>{data::hash_token("red", seed), data::hash_token("blue", seed)});
  CHECK(keys_of(b, 0, 1) == std::vector<uint64_t>{data::hash_token("say \"hi\"", seed)});
  CHECK(keys_of(b, 0, 2).empty());
  CHECK(keys_of(b, 1, 0) == std::vector<uint64_t>{2, 3});  // max_len 2 keeps the most recent
  CHECK(keys_of(b, 1, 1).empty());
  CHECK(keys_of(b, 1, 2) == std::vector<uint64_t>{7});
  CHECK(b.sample_ids == std::vector<uint64_t>{0, 1, 2});

  CHECK_THAT(test::error_of([&] { data::parse_text("clicked,price,tags\n1,2,3\n", s, "a.csv"); }),
             Contains("a.csv:1: the header has no field 'hist'"));
  CHECK(data::parse_text("", s, "a.csv").size == 0);  // an empty file needs no header
  CHECK_THAT(
      test::error_of([&] { data::parse_text("hist,tags,hist,clicked,price\n", s, "a.csv"); }),
      Contains("a.csv:1: the header names field 'hist' twice"));
}

TEST_CASE("libsvm and libfm records", "[data][formats]") {
  SECTION("libsvm into a dense column") {
    const data::Schema s({data::Column::label("y"), data::Column::dense("x", 4)},
                         data::TextFormat::of(data::FormatKind::kLibsvm));
    const data::Batch b = data::parse_text("+1 0:1.5 3:-2\n-1\n0  2:7\t1:1\n", s, "a.svm");
    REQUIRE(b.size == 3);
    CHECK(b.labels == std::vector<float>{1, 0, 0});
    CHECK(b.dense == std::vector<float>{1.5f, 0, 0, -2, 0, 0, 0, 0, 0, 1, 7, 0});
  }
  SECTION("libsvm into a sparse column") {
    const data::Schema s({data::Column::label("y"), data::Column::sparse("ids")},
                         data::TextFormat::of(data::FormatKind::kLibsvm));
    const data::Batch b = data::parse_text("1 5:1 9:1 12:0\n0\n", s, "a.svm");
    CHECK(keys_of(b, 0, 0) == std::vector<uint64_t>{5, 9});  // value 0: absent
    CHECK(keys_of(b, 0, 1).empty());
  }
  SECTION("libfm fields map to feature columns in order") {
    const data::Schema s({data::Column::label("y"), data::Column::sparse("user"),
                          data::Column::dense("age", 1), data::Column::sequence("hist", 5)},
                         data::TextFormat::of(data::FormatKind::kLibfm));
    const data::Batch b = data::parse_text("1 0:42:1 2:7:1 1:0:35 2:8:1\n0 2:9:1\n", s, "a.fm");
    REQUIRE(b.size == 2);
    CHECK(keys_of(b, 0, 0) == std::vector<uint64_t>{42});
    CHECK(keys_of(b, 1, 0) == std::vector<uint64_t>{7, 8});
    CHECK(b.dense == std::vector<float>{35, 0});
    CHECK(keys_of(b, 1, 1) == std::vector<uint64_t>{9});
  }
}

TEST_CASE("The criteo preset reads Criteo display-ads records", "[data][formats]") {
  const data::Schema s = data::Schema::preset("criteo");
  std::string line = "1";
  for (int i = 1; i <= 13; ++i) line += i == 2 ? "\t-3" : i == 5 ? "\t" : fmt::format("\t{}", i);
  for (int i = 1; i <= 26; ++i) line += i == 26 ? "\t" : fmt::format("\t{:08x}", 0x68fd1e64 + i);
  const data::Batch b = data::parse_text(line + "\n", s, "day_0");
  REQUIRE(b.size == 1);
  CHECK(b.dense[0] == std::log1p(1.0f));
  CHECK(b.dense[1] == 0.0f);  // -3 clipped to 0
  CHECK(b.dense[4] == 0.0f);  // missing
  CHECK(b.dense[12] == std::log1p(13.0f));
  CHECK(keys_of(b, 0, 0) ==
        std::vector<uint64_t>{data::hash_token("68fd1e65", s.columns()[14].hash_seed())});
  CHECK(keys_of(b, 25, 0).empty());
}

TEST_CASE("Every bad-record reason names the file and the line", "[data][formats]") {
  test::TempDir dir;
  const data::Schema tsv({data::Column::label("y"), data::Column::dense("d", 2),
                          data::Column::dense("one", 1), data::Column::sparse("s")});
  const data::Schema csv = data::Schema::parse(kCsvSchema, "csv.toml");
  const data::Schema svm({data::Column::label("y"), data::Column::dense("x", 2)},
                         data::TextFormat::of(data::FormatKind::kLibsvm));
  const data::Schema svm_sparse({data::Column::label("y"), data::Column::sparse("ids")},
                                data::TextFormat::of(data::FormatKind::kLibsvm));
  const data::Schema fm({data::Column::label("y"), data::Column::sparse("a")},
                        data::TextFormat::of(data::FormatKind::kLibfm));
  struct Case {
    const data::Schema* schema;
    std::string good, bad, reason, message;
  };
  const std::vector<Case> cases = {
      {&tsv, "1\t1,2\t3\t4", "1\t1,2\t3", "field count",
       "expected 4 tab-separated fields (one per schema column), found 3"},
      {&tsv, "1\t1,2\t3\t4", "1\t1,x\t3\t4", "bad number",
       "column 'd' (field 2): 'x' is not a number"},
      {&tsv, "1\t1,2\t3\t4", "3\t1,2\t3\t4", "label range", "'3' is out of range"},
      {&tsv, "1\t1,2\t3\t4", "1\t1,2\t3\t-4", "bad id", "'-4' is not a decimal uint64 id"},
      {&tsv, "1\t1,2\t3\t4", "1\t1\t3\t4", "dense count", "expected 2 comma-separated values"},
      {&tsv, "1\t1,2\t3\t4", "1\t1,2\t\t4", "empty field",
       "column 'one' (field 3): the field is empty"},
      {&svm, "1 0:1", "1 0=1", "bad pair", "'0=1' is not id:value"},
      {&svm, "1 0:1", "1 2:1", "index range", "index '2' is outside the dense column's [0, 2)"},
      {&fm, "1 0:3:1", "1 1:3:1", "index range", "field '1' is not a feature column"},
      {&svm_sparse, "1 4:1", "1 4:0.5", "non-binary value", "sparse columns take binary features"},
      {&svm_sparse, "1 4:1", "1 x:0", "bad id", "'x' is not a decimal uint64 id"},  // absent, bad
      {&csv, "1,2,a,3", "1,2,\"a,3", "bad quotes", "has no closing quote"},
  };
  for (const Case& c : cases) {
    INFO(c.reason << ": " << c.bad);
    const bool header = c.schema->format().header;
    const std::string text = (header ? std::string("clicked,price,tags,hist\n") : "") + c.good +
                             "\n" + c.good + "\n" + c.bad + "\n" + c.good + "\n";
    const std::string path = dir.write("in.txt", text);
    const int line = header ? 4 : 3;
    // Fail: the message names file:line.
    CHECK_THAT(test::error_of([&] { data::read_text(path, *c.schema); }),
               Contains(fmt::format("{}:{}: ", path, line)) && Contains(c.message));
    // Skip: counted under its reason, the example names file:line, the good records remain.
    train::FileSourceOptions o;
    o.batch_size = 10;
    o.on_bad_record = train::BadRecordPolicy::kSkip;
    train::TextBatchSource source({path}, *c.schema, o);
    source.start_epoch(0);
    data::Batch b;
    REQUIRE(source.next(b));
    CHECK(b.size == 3);
    CHECK(source.bad_records().per_reason.at(c.reason) == 1);
    CHECK_THAT(source.bad_records().examples.at(c.reason).at(0),
               Contains(fmt::format("{}:{}: ", path, line)) && Contains(c.message));
  }
}

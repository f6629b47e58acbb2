// lockstep-train on the user's own files: the CSV sample of examples/data (README, "Train on your
// own data") through --train/--valid/--test/--schema, globs over split files, bad records
// failing with file:line or skipped and reported, and flag errors.

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

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
  CHECK_THAT(out, Contains("--train and --follow need --schema"));
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

TEST_CASE("lockstep-train --follow trains on files as they appear and exports the student",
          "[data][cli][follow]") {
  test::TempDir scratch;
  std::string out;
  const std::string datagen = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-datagen";
  const std::string predict = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-predict";
  const std::string data = scratch.file("data"), in = scratch.file("in");
  REQUIRE(test::run_tool(datagen, "--out " + data + " --train 3000 --test 500 --shards 3",
                         scratch, out) == 0);
  std::filesystem::create_directories(in);
  std::filesystem::copy_file(data + "/train-00000-of-00003.tsv", in + "/a.tsv");
  std::filesystem::copy_file(data + "/train-00001-of-00003.tsv", in + "/b.tsv");
  std::filesystem::copy_file(data + "/train-00002-of-00003.tsv", in + "/_c.partial");  // skipped
  // A file that appears later, renamed into place complete, is trained on in the next round.
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    std::filesystem::rename(in + "/_c.partial", in + "/c.tsv");
  });
  const std::string args = "--device cpu --model dual --log-every 0 --table-rows 4096 "
                           "--collision-sample 0 --schema " + data + "/schema.toml --follow " +
                           in + " --follow-poll 0.2 --export " + scratch.file("student");
  const int rc = test::run_tool(kTrain, args + " --follow-idle-exit 4 --test " + data +
                                            "/test.tsv", scratch, out);
  later.join();
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Contains("--follow: training on 2 new file(s), " + in + "/a.tsv ... " + in +
                           "/b.tsv"));
  CHECK_THAT(out, Contains("--follow: training on 1 new file(s), " + in + "/c.tsv"));
  CHECK_THAT(out, Contains("no new file in " + in + " for 4 s: stopping"));
  CHECK_THAT(out, Contains("result: AUC"));
  // Versioned bundles and LATEST; lockstep-predict follows LATEST.
  std::ifstream latest(scratch.file("student") + "/LATEST");
  std::string name;
  std::getline(latest, name);
  CHECK(name == "step-3");  // 2000 + 1000 samples in batches of 1024: 2 + 1 steps
  CHECK(std::filesystem::is_directory(scratch.file("student") + "/step-2"));
  REQUIRE(test::run_tool(predict, "--device cpu --bundle " + scratch.file("student") +
                                      " --data " + data + "/test.tsv --schema " + data +
                                      "/schema.toml",
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("scored 500 records"));

  // SIGTERM stops it cleanly: the run exits 0 after exporting the student it has.
  std::filesystem::remove_all(scratch.file("student"));
  const int term = test::run_tool("timeout --preserve-status -s TERM 3 " + kTrain, args, scratch,
                                  out);
  INFO(out);
  CHECK(term == 0);
  CHECK_THAT(out, Contains("--follow: stop requested by a signal"));
  CHECK(std::filesystem::exists(scratch.file("student") + "/LATEST"));
}

TEST_CASE("lockstep-train --follow resumes where its checkpoint left it: no file twice, none lost",
          "[data][cli][follow][resume]") {
  test::TempDir scratch;
  const std::string src = std::string(LOCKSTEP_SOURCE_DIR) + "/test/data/follow";
  const std::string schema =
      std::string(LOCKSTEP_SOURCE_DIR) + "/test/data/heldout-bad-record-rank1/schema.toml";
  const auto run = [&](const std::string& dir, const std::string& ckpt, const std::string& extra) {
    std::string out;
    const int rc = test::run_tool(kTrain,
                                  "--device cpu --batch-size 8 --table-rows 4096 --log-every 0 "
                                  "--collision-sample 0 --schema " +
                                      schema + " --follow " + dir +
                                      " --follow-poll 0.1 --follow-idle-exit 0.3 "
                                      "--checkpoint-dir " +
                                      ckpt + " --resume-or-start " + extra,
                                  scratch, out);
    INFO(out);
    REQUIRE(rc == 0);
    return out;
  };
  const auto trained = [](const std::string& out) {
    std::smatch m;
    REQUIRE(std::regex_search(out, m, std::regex(R"(result: trained ([0-9]+) samples)")));
    return std::stol(m[1]);
  };
  const auto hash = [](const std::string& out) {
    std::smatch m;
    REQUIRE(std::regex_search(out, m, std::regex(R"(replica state hash ([0-9a-f]+))")));
    return std::string(m[1]);
  };
  const auto dir_with = [&](const std::string& name, std::vector<std::string> files) {
    const std::string dir = scratch.file(name);
    std::filesystem::create_directories(dir);
    for (const auto& f : files) std::filesystem::copy_file(src + "/" + f, dir + "/" + f);
    return dir;
  };
  // Both files in one pass, uninterrupted: the reference.
  const std::string ref = run(dir_with("a", {"part-0.tsv", "part-1.tsv"}), scratch.file("ca"), "");
  const long total = trained(ref);
  REQUIRE(total > 50);

  SECTION("a stop in the middle of a pass resumes into the same files at the same batch") {
    const std::string dir = dir_with("b", {"part-0.tsv", "part-1.tsv"});
    const std::string first = run(dir, scratch.file("cb"), "--inject-fault sigterm:0:4");
    CHECK_THAT(first, Contains("stopped at step 5 by a signal"));
    const std::string second = run(dir, scratch.file("cb"), "");
    CHECK_THAT(second, Contains("--follow: resuming in the middle of 2 file(s)"));
    CHECK(trained(second) == total - 5 * 8);  // 5 full batches of 8 before the stop: each once
    CHECK(hash(second) == hash(ref));         // bitwise the uninterrupted run
  }
  SECTION("a restart after a completed pass trains only the files that are new") {
    const std::string dir = dir_with("c", {"part-0.tsv"});
    const long part0 = trained(run(dir, scratch.file("cc"), ""));
    std::filesystem::copy_file(src + "/part-1.tsv", dir + "/part-1.tsv");
    const std::string second = run(dir, scratch.file("cc"), "");
    CHECK_THAT(second, Contains("--follow: resuming after 1 file(s) trained"));
    CHECK_THAT(second, Contains("training on 1 new file(s), " + dir + "/part-1.tsv"));
    CHECK(part0 + trained(second) == total);
    const std::string third = run(dir, scratch.file("cc"), "");
    CHECK(trained(third) == 0);
    CHECK(hash(third) == hash(second));
  }
}

TEST_CASE("lockstep-data convert writes a cache that trains exactly as its text does",
          "[data][cli][cache]") {
  test::TempDir scratch;
  std::string out;
  const std::string tool = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-data";
  const std::string cache = scratch.file("ads.cache");
  REQUIRE(test::run_tool(tool,
                         "convert --schema " + kSample + "/ads.schema.toml --out " + cache + " " +
                             kSample + "/ads-train.csv",
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("wrote " + cache + ": 5000 records from 1 file(s)"));
  CHECK_THAT(out, Contains("user                 5000 ids, 60 distinct"));
  const std::string common = "--device cpu --log-every 0 --table-rows 4096 --batch-size 64 "
                             "--valid " + kSample + "/ads-valid.csv";
  const auto auc = [&](const std::string& args) {
    std::string o;
    REQUIRE(test::run_tool(kTrain, common + " " + args, scratch, o) == 0);
    std::smatch m;
    REQUIRE(std::regex_search(o, m, std::regex(R"(result: validation AUC ([0-9.]+))")));
    return std::string(m[1]);
  };
  // The same records in the same batches: the same model, the same AUC to the last digit.
  CHECK(auc("--train " + cache) ==
        auc("--schema " + kSample + "/ads.schema.toml --train " + kSample + "/ads-train.csv"));
  REQUIRE(test::run_tool(kTrain, common + " --train " + cache, scratch, out) == 0);
  CHECK_THAT(out, Contains("exact: every key of the data"));
  // A damaged cache names itself.
  {
    std::fstream f(cache, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  CHECK(test::run_tool(kTrain, common + " --train " + cache, scratch, out) == 1);
  CHECK_THAT(out, Contains(cache + ": block 0"));
  // A bad record in the text: convert names it, or skips it when told.
  scratch.write("bad.csv", read_file(kSample + "/ads-valid.csv") + "1,2,3,cat1,x,5,\"\"\n");
  CHECK(test::run_tool(tool, "convert --schema " + kSample + "/ads.schema.toml --out " +
                                 scratch.file("bad.cache") + " " + scratch.file("bad.csv"),
                       scratch, out) == 1);
  CHECK_THAT(out, Contains(scratch.file("bad.csv") + ":1002: column 'price' (field 5)"));
  CHECK_FALSE(std::filesystem::exists(scratch.file("bad.cache")));
  REQUIRE(test::run_tool(tool, "convert --on-bad-record skip --schema " + kSample +
                                   "/ads.schema.toml --out " + scratch.file("bad.cache") + " " +
                                   scratch.file("bad.csv"),
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("1000 records") && Contains("1 bad record(s) skipped"));
}

TEST_CASE("The online loop: offline dual training, then --follow --student-only --init-from",
          "[data][cli][follow]") {
  test::TempDir scratch;
  std::string out;
  const std::string datagen = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-datagen";
  const std::string data = scratch.file("data"), in = scratch.file("fresh");
  REQUIRE(test::run_tool(datagen, "--out " + data + " --train 4000 --test 1000 --shards 2",
                         scratch, out) == 0);
  const std::string common = "--device cpu --model dual --log-every 0 --table-rows 4096 "
                             "--collision-sample 0 --test " + data + "/test.tsv";
  const auto teacher_auc = [](const std::string& o) {
    std::smatch m;
    REQUIRE(std::regex_search(o, m, std::regex(R"(teacher AUC ([0-9.]+))")));
    return std::string(m[1]);
  };
  // Offline: teacher and student on the first shard, a checkpoint at the end.
  REQUIRE(test::run_tool(kTrain,
                         common + " --schema " + data + "/schema.toml --train " + data +
                             "/train-00000-of-00002.tsv --checkpoint-dir " + scratch.file("ck"),
                         scratch, out) == 0);
  const std::string offline_teacher = teacher_auc(out);
  const std::string ckpt = scratch.file("ck");  // the root: --init-from follows its LATEST
  // Online: the newest data arrives in a directory; only the student learns from it.
  std::filesystem::create_directories(in);
  std::filesystem::copy_file(data + "/train-00001-of-00002.tsv", in + "/day-2.tsv");
  REQUIRE(test::run_tool(kTrain,
                         common + " --schema " + data + "/schema.toml --student-only --init-from " +
                             ckpt + " --follow " + in + " --follow-poll 0.2 --follow-idle-exit 1 "
                             "--export " + scratch.file("student"),
                         scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("--follow: training on 1 new file(s)"));
  CHECK(teacher_auc(out) == offline_teacher);  // teacher and embeddings untouched
  CHECK(std::filesystem::exists(scratch.file("student") + "/LATEST"));
}

TEST_CASE("lockstep-train --keep-checkpoints bounds the checkpoints kept", "[data][cli]") {
  test::TempDir scratch;
  std::string out;
  const std::string ckpt = scratch.file("ck");
  REQUIRE(test::run_tool(kTrain,
                         "--device cpu --log-every 0 --table-rows 1024 --batch-size 1000 "
                         "--collision-sample 0 --schema " + kSample + "/ads.schema.toml --train " +
                             kSample + "/ads-train.csv --checkpoint-dir " + ckpt +
                             " --checkpoint-every 1 --keep-checkpoints 3",
                         scratch, out) == 0);
  INFO(out);
  int kept = 0;
  for (const auto& e : std::filesystem::directory_iterator(ckpt)) kept += e.is_directory();
  CHECK(kept == 3);  // 5 steps, one checkpoint each, the 3 newest kept
  CHECK(test::run_tool(kTrain, "--device cpu --keep-checkpoints 0", scratch, out) != 0);
}

TEST_CASE("The built-in model with dynamic tables: --export-sparse writes bases and deltas that "
          "lockstep-data sparse reads",
          "[data][cli][dynamic]") {
  test::TempDir scratch;
  const std::string data_tool = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-data";
  std::string out;
  const std::string args =
      "--device cpu --log-every 0 --batch-size 64 --schema " + kSample + "/ads.schema.toml " +
      "--train " + kSample + "/ads-train.csv --test " + kSample + "/ads-test.csv --epochs 2 " +
      "--set 'model.tables_per_column.kind=\"dynamic\"' --set model.tables_per_column.rows=2000 " +
      "--export-sparse " + scratch.file("sparse") + " --sparse-delta-every 30";
  REQUIRE(test::run_tool(kTrain, args, scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("dynamic table 'user'"));
  CHECK_THAT(out, Contains("sparse base written"));
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(R"(result: AUC ([0-9.]+))")));
  CHECK(std::stod(m[1]) > 0.6);
  CHECK_THAT(out, Contains("table 'user': 60 distinct keys, capacity 2000 (dynamic"));
  // 79 steps per epoch: deltas after steps 30, 60, a base after 79; deltas after 90, 120, 150, a
  // base after 158.
  std::vector<std::string> exports;
  for (const auto& e : std::filesystem::directory_iterator(scratch.file("sparse")))
    exports.push_back(e.path().filename().string());
  std::sort(exports.begin(), exports.end());
  CHECK(exports ==
        std::vector<std::string>{"base-000003", "base-000007", "delta-000001", "delta-000002",
                                 "delta-000004", "delta-000005", "delta-000006"});
  REQUIRE(test::run_tool(data_tool, "sparse " + scratch.file("sparse") + " --table user --key 9 "
                         "--key 123456789", scratch, out) == 0);
  CHECK_THAT(out, Contains("base 7, 0 delta(s) after it"));
  CHECK_THAT(out, Contains("table user"));
  CHECK_THAT(out, Contains("9\theld\tlr "));
  CHECK_THAT(out, Contains("123456789\tabsent\tlr 0\t"));
  CHECK(test::run_tool(data_tool, "sparse " + scratch.file("nothing"), scratch, out) == 1);
  CHECK_THAT(out, Contains("no base-<n> directory"));

  // A student bundle that references the sparse export serves the model the run reports: the
  // restored best one, after the shrinks (a base is written for it).
  const std::string dual_args =
      "--device cpu --log-every 0 --batch-size 64 --model dual --schema " + kSample +
      "/ads.schema.toml --train " + kSample + "/ads-train.csv --valid " + kSample +
      "/ads-valid.csv --test " + kSample + "/ads-test.csv --epochs 3 " +
      "--set 'model.tables_per_column.kind=\"dynamic\"' --set model.tables_per_column.rows=2000 " +
      "--set model.tables_per_column.accessor.embedx_threshold=1 --export-sparse " +
      scratch.file("sparse2") + " --export " + scratch.file("bundle") + " --checkpoint-dir " +
      scratch.file("ckpt");
  REQUIRE(test::run_tool(kTrain, dual_args, scratch, out) == 0);
  INFO(out);
  REQUIRE(std::regex_search(out, m, std::regex(R"(test AUC ([0-9.]+) \[student\])")));
  const std::string trained_auc = m[1];
  const std::string predict = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-predict";
  REQUIRE(test::run_tool(predict,
                         "--device cpu --bundle " + scratch.file("bundle") + " --data " + kSample +
                             "/ads-test.csv --schema " + kSample + "/ads.schema.toml",
                         scratch, out) == 0);
  REQUIRE(std::regex_search(out, m, std::regex(R"(AUC ([0-9.]+), logloss)")));
  CHECK(std::string(m[1]) == trained_auc);
}

TEST_CASE("lockstep-train --follow with dynamic tables: a .day file is a boundary (sparse base, "
          "shrink); a base at the end",
          "[data][cli][follow][dynamic]") {
  test::TempDir scratch;
  std::string out;
  const std::string in = scratch.file("in");
  split_csv(kSample + "/ads-train.csv", scratch, 2);  // part-0.csv, part-1.csv (with headers)
  std::filesystem::create_directories(in);
  std::filesystem::rename(scratch.file("part-0.csv"), in + "/a.csv");
  std::filesystem::rename(scratch.file("part-1.csv"), in + "/c.csv");
  scratch.write("in/b.day", "");  // the day ends after a.csv
  const std::string args =
      "--device cpu --log-every 0 --batch-size 64 --schema " + kSample + "/ads.schema.toml " +
      "--follow " + in + " --follow-poll 0.1 --follow-idle-exit 0.5 " +
      "--set 'model.tables_per_column.kind=\"dynamic\"' --set model.tables_per_column.rows=2000 " +
      "--export-sparse " + scratch.file("sparse");
  REQUIRE(test::run_tool(kTrain, args, scratch, out) == 0);
  INFO(out);
  CHECK_THAT(out, Contains("--follow: training on 1 new file(s), " + in + "/a.csv"));
  CHECK_THAT(out, Contains("--follow: day marker " + in + "/b.day: a boundary"));
  CHECK_THAT(out, Contains("--follow: training on 1 new file(s), " + in + "/c.csv"));
  CHECK_THAT(out, Contains("by 1 shrinks"));   // the marker's boundary only: not each round's end
  CHECK_THAT(out, !Contains("by 2 shrinks"));
  std::vector<std::string> exports;
  for (const auto& e : std::filesystem::directory_iterator(scratch.file("sparse")))
    exports.push_back(e.path().filename().string());
  std::sort(exports.begin(), exports.end());
  CHECK(exports == std::vector<std::string>{"base-000001", "base-000002"});  // marker, end
}

TEST_CASE(
    "lockstep-train never removes what it did not write, and fails data that trains or "
    "scores nothing",
    "[data][cli][errors]") {
  test::TempDir scratch;
  std::string out;
  const std::string schema = kSample + "/ads.schema.toml";
  const std::string small_text = [&] {  // the header and 199 records
    std::istringstream in(read_file(kSample + "/ads-train.csv"));
    std::string text, line;
    for (int i = 0; i < 200 && std::getline(in, line); ++i) text += line + "\n";
    return text;
  }();
  scratch.write("small.csv", small_text);
  const std::string small = scratch.file("small.csv");
  const std::string common =
      "--device cpu --log-every 0 --table-rows 4096 --batch-size 64 --schema " + schema;
  const std::string train = common + " --train " + small;

  // Outputs: a user's file, a directory of the user's files, the current directory, or the
  // checkpoint directory are refused at set-up, and left as they were.
  scratch.write("mine.csv", "keep\n");
  std::filesystem::create_directories(scratch.file("mydir"));
  scratch.write("mydir/notes.txt", "keep\n");
  CHECK(test::run_tool(kTrain, train + " --save " + scratch.file("mine.csv"), scratch, out) == 1);
  CHECK_THAT(out, Contains("--save '" + scratch.file("mine.csv") +
                           "' exists and is not a directory: lockstep replaces only directories "
                           "it wrote itself"));
  CHECK(test::run_tool(kTrain, train + " --save " + scratch.file("mydir/"), scratch, out) == 1);
  CHECK_THAT(out, Contains("has no manifest.json written by lockstep"));
  CHECK(test::run_tool("cd " + scratch.file("mydir") + " && " + kTrain, train + " --save .",
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("--save '.' is the current directory"));
  CHECK(read_file(scratch.file("mine.csv")) == "keep\n");
  CHECK(read_file(scratch.file("mydir/notes.txt")) == "keep\n");
  CHECK(test::run_tool(
            kTrain,
            train + " --checkpoint-dir " + scratch.file("run") + " --save " + scratch.file("run"),
            scratch, out) == 1);
  CHECK_THAT(out, Contains("--checkpoint-dir and --save name the same directory"));
  // A model lockstep saved is replaced by the next --save.
  REQUIRE(test::run_tool(kTrain, train + " --save " + scratch.file("model"), scratch, out) == 0);
  REQUIRE(test::run_tool(kTrain, train + " --save " + scratch.file("model/"), scratch, out) == 0);
  CHECK(std::filesystem::exists(scratch.file("model/manifest.json")));
  // lockstep-eval with another schema: only the format may differ, not the columns' order.
  const std::string eval = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-eval";
  std::string swapped = read_file(schema);
  const std::string user = "name = \"user\"", ad = "name = \"ad\"", mark = "name = \"@\"";
  REQUIRE(swapped.find(user) != std::string::npos);
  swapped.replace(swapped.find(user), user.size(), mark);
  swapped.replace(swapped.find(ad), ad.size(), user);
  swapped.replace(swapped.find(mark), mark.size(), ad);
  scratch.write("swapped.toml", swapped);
  CHECK(test::run_tool(eval,
                       "--device cpu --model " + scratch.file("model") + " --data " + small +
                           " --schema " + scratch.file("swapped.toml"),
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("feature column 1 is ad (sparse), but the model's schema"));
  CHECK(test::run_tool(eval,
                       "--device cpu --model " + scratch.file("model") + " --data " + small +
                           " --schema " + schema,
                       scratch, out) == 0);

  // A bad test record is found after training, but the model was saved before it was read.
  std::string bad = small_text;
  bad.insert(bad.find('\n') + 1, "1,5,7,cat1,n/a,3,\"\"\n");
  scratch.write("bad.csv", bad);
  CHECK(test::run_tool(kTrain,
                       train + " --valid " + small + " --test " + scratch.file("bad.csv") +
                           " --save " + scratch.file("saved"),
                       scratch, out) == 1);
  CHECK_THAT(out, Contains(scratch.file("bad.csv") + ":2: column 'price'"));
  CHECK(std::filesystem::exists(scratch.file("saved/manifest.json")));
  // ... and skipped held-out records are reported like the training data's.
  REQUIRE(test::run_tool(kTrain, train + " --on-bad-record skip --valid " + scratch.file("bad.csv"),
                         scratch, out) == 0);
  CHECK_THAT(out, Contains("evaluation: rank 0: 1 bad record(s) skipped: 1 × bad number (e.g. " +
                           scratch.file("bad.csv") + ":2:"));
  // A held-out file whose header does not fit the schema fails at set-up, before training.
  scratch.write("badheader.csv", "Clicked" + small_text.substr(small_text.find(',')));
  CHECK(test::run_tool(kTrain, train + " --valid " + scratch.file("badheader.csv"), scratch, out) ==
        1);
  CHECK_THAT(out, Contains("set-up failed") &&
                      Contains(scratch.file("badheader.csv") + ":1: the header has no field"));
  CHECK_THAT(out, !Contains("epoch 1 trained"));
  // A UTF-8 byte order mark before the header is not part of the first field's name.
  scratch.write("bom.csv", "\xEF\xBB\xBF" + small_text);
  CHECK(test::run_tool(kTrain, common + " --train " + scratch.file("bom.csv"), scratch, out) == 0);

  // Data with bytes but no record trains nothing: an error, not an untrained model.
  scratch.write("header-only.csv", small_text.substr(0, small_text.find('\n') + 1));
  CHECK(test::run_tool(kTrain,
                       common + " --train " + scratch.file("header-only.csv") + " --save " +
                           scratch.file("untrained"),
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("trained on 0 samples: the training data holds no usable record"));
  CHECK_FALSE(std::filesystem::exists(scratch.file("untrained")));
  // --follow needs the directory files appear in.
  CHECK(test::run_tool(kTrain, common + " --follow " + scratch.file("nodir"), scratch, out) == 1);
  CHECK_THAT(out, Contains("--follow " + scratch.file("nodir") + ": does not exist"));

  // lockstep-data convert never writes over its input or any file that is not a cache.
  const std::string tool = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-data";
  CHECK(test::run_tool(tool, "convert --schema " + schema + " --out " + small + " " + small,
                       scratch, out) == 1);
  CHECK_THAT(out, Contains("--out " + small + ": is one of the input files"));
  CHECK(test::run_tool(
            tool, "convert --schema " + schema + " --out " + scratch.file("mine.csv") + " " + small,
            scratch, out) == 1);
  CHECK_THAT(out, Contains(scratch.file("mine.csv") + ": exists and is not a data cache"));
  CHECK(read_file(small) == small_text);
  CHECK(read_file(scratch.file("mine.csv")) == "keep\n");
}

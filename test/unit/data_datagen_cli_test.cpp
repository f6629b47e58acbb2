// End-to-end checks of the lockstep-datagen tool: what it writes reads back as the generator's
// samples, and failures leave nothing behind. Built only with LOCKSTEP_BUILD_EXAMPLES
// (test/CMakeLists.txt), which also builds the tool before the tests.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data_test_util.h"
#include "lockstep/data/synthetic.h"
#include "lockstep/data/text_format.h"

using namespace lockstep;
using namespace lockstep::data;
using Catch::Matchers::Contains;

namespace {

const std::string kDatagen = std::string(LOCKSTEP_BINARY_DIR) + "/examples/lockstep-datagen";

int run_datagen(const std::string& args, const test::TempDir& scratch, std::string& output) {
  return test::run_tool(kDatagen, args, scratch, output);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("lockstep-datagen writes shards that read back as the generator's samples",
          "[data][cli]") {
  REQUIRE(std::filesystem::exists(kDatagen));
  test::TempDir scratch;
  const std::string out = scratch.file("out");
  std::string output;
  REQUIRE(run_datagen("--out " + out +
                          " --train 1000 --test 200 --seed 3 --preset demo "
                          "--shards 3 --chunk 128",
                      scratch, output) == 0);
  CHECK_THAT(output, Contains("train: 1000 samples in 3 file(s)") && Contains("oracle AUC"));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(out))
    files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"meta.json", "schema.toml", "test.tsv",
                                          "train-00000-of-00003.tsv", "train-00001-of-00003.tsv",
                                          "train-00002-of-00003.tsv"});

  SyntheticConfig config = SyntheticConfig::demo();
  config.seed = 3;
  const SyntheticGenerator gen(config);
  const Schema schema = Schema::load(out + "/schema.toml");
  REQUIRE(schema == gen.schema());

  // Shards hold contiguous ranges [333k, 333(k+1)) (1000 * k / 3 rounded down).
  const int64_t starts[] = {0, 333, 666, 1000};
  Batch train;
  for (int k = 0; k < 3; ++k) {
    const std::string path = out + "/train-0000" + std::to_string(k) + "-of-00003.tsv";
    TextReader reader(path, schema, 0, 1, static_cast<uint64_t>(starts[k]));
    Batch part;
    int64_t records = 0;
    while (reader.next(part, 100)) {
      records += part.size;
      test::append_batch(train, part);
    }
    CHECK(records == starts[k + 1] - starts[k]);
  }
  test::require_same_batch(train, gen.generate(0, 1000), "train shards");
  TextReader test_reader(out + "/test.tsv", schema, 0, 1, 1000);
  Batch test_batch;
  REQUIRE(test_reader.next(test_batch, 1000));
  test::require_same_batch(test_batch, gen.generate(1000, 200), "test split");

  const std::string meta = read_file(out + "/meta.json");
  CHECK_THAT(meta, Contains("\"preset\": \"demo\"") && Contains("\"seed\": 3") &&
                       Contains("\"oracle_auc\"") && Contains("\"count\": 1000") &&
                       Contains("\"count\": 200") && Contains("\"first_sample\": 666") &&
                       Contains("\"path\": \"train-00002-of-00003.tsv\""));
}

TEST_CASE("lockstep-datagen rejects bad flags and leaves nothing half-written", "[data][cli]") {
  REQUIRE(std::filesystem::exists(kDatagen));
  test::TempDir scratch;
  std::string output;
  const std::string out = scratch.file("out");
  CHECK(run_datagen("--out " + out + " --train 10 --preset huge", scratch, output) != 0);
  CHECK_THAT(output, Contains("--preset") && Contains("huge"));
  CHECK(run_datagen("--out " + out + " --train 0", scratch, output) != 0);
  CHECK_THAT(output, Contains("--train"));
  CHECK(run_datagen("--out " + out + " --train 10 --shards 0", scratch, output) != 0);
  CHECK(run_datagen("--train 10", scratch, output) != 0);
  CHECK_THAT(output, Contains("--out is required"));
  CHECK(run_datagen("--out " + out + " --train 10 --log-level loud", scratch, output) != 0);
  CHECK_THAT(output, Contains("'loud' is not a level"));
  CHECK_FALSE(std::filesystem::exists(out));  // bad flags create nothing

  // A directory squatting on test.tsv makes the final rename fail: the run fails, and the
  // files it had already renamed are removed again, with no temporaries left.
  std::filesystem::create_directories(out + "/test.tsv");
  CHECK(run_datagen("--out " + out + " --train 50 --test 5", scratch, output) != 0);
  CHECK_THAT(output, Contains("test.tsv"));
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(out))
    left.push_back(e.path().filename().string());
  CHECK(left == std::vector<std::string>{"test.tsv"});
}

// lockstep-train trains the example LR, FM and DeepFM configs on generated data and on the ads
// example files, and lockstep-eval scores the models it saved.
#include <catch2/catch.hpp>

#include "data_test_util.h"
#include "lockstep/config.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {
const std::string kBin = std::string(LOCKSTEP_BINARY_DIR) + "/examples/";
const std::string kSource = std::string(LOCKSTEP_SOURCE_DIR) + "/";
}  // namespace

TEST_CASE("lockstep-train trains LR, FM and DeepFM; lockstep-eval loads what it saved",
          "[train][cli][fm]") {
  test::TempDir scratch;
  std::string out;
  const std::string data = scratch.file("data");
  REQUIRE(test::run_tool(kBin + "lockstep-datagen",
                         "--out " + data + " --train 3000 --test 600 --preset demo", scratch,
                         out) == 0);
  const std::string ads = kSource + "examples/data/";
  struct Data {
    std::string name, train_args, eval_data;
  };
  const std::vector<Data> sets = {{"synthetic", "--data " + data, data + "/test.tsv"},
                                  {"ads",
                                   "--schema " + ads + "ads.schema.toml --train " + ads +
                                       "ads-train.csv --test " + ads + "ads-test.csv",
                                   ads + "ads-valid.csv"}};
  for (const auto& d : sets)
    for (const std::string kind : {"lr", "fm", "deepfm"}) {
      INFO(d.name << " " << kind);
      const std::string saved = scratch.file("saved-" + d.name + "-" + kind);
      REQUIRE(test::run_tool(kBin + "lockstep-train",
                             "--device cpu " + d.train_args + " --config " + kSource +
                                 "examples/configs/" + kind +
                                 ".toml --set model.tables_per_column.rows=4096 --epochs 1 "
                                 "--batch-size 128 --save " +
                                 saved,
                             scratch, out) == 0);
      INFO(out);
      CHECK_THAT(out, Contains("result: AUC"));
      REQUIRE(test::run_tool(kBin + "lockstep-eval",
                             "--device cpu --model " + saved + " --data " + d.eval_data, scratch,
                             out) == 0);
      INFO(out);
      CHECK_THAT(out, Contains("auc") || Contains("AUC"));
    }
}

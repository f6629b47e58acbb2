// Model selection in the Trainer: evaluation every epoch and every N steps, early stopping on a
// crafted validation curve, best/ equal bitwise to the best epoch's checkpoint, the best model
// restored at the end, and selection state carried across a resume.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "lockstep/comm/communicator.h"
#include "lockstep/train/checkpoint.h"
#include "lockstep/train/local_trainer.h"
#include "lockstep/train/trainer.h"
#include "model_fixture.h"
#include "train/consistency.h"

using namespace lockstep;
namespace fs = std::filesystem;

namespace {


/// Validation data whose labels are chosen at each evaluation so that the model's AUC on it is
/// exactly curve[k] at the k-th evaluation (k = 0, 1, ...): with m positives and m negatives
/// and distinct scores, positive i placed above c_i negatives gives AUC = Σ c_i / m².
class CraftedCurve final : public train::BatchSource {
 public:
  CraftedCurve(models::Model<float>& model, const Context& ctx, std::vector<double> curve)
      : local_(model, ctx), curve_(std::move(curve)), batch_(test::fixture_batch(50000, 2 * kM)) {}
  void start_epoch(int64_t) override {
    REQUIRE(evaluations_ < curve_.size());
    const auto p = local_.predict(batch_);
    std::vector<size_t> order(p.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
    for (size_t i = 1; i < order.size(); ++i) REQUIRE(p[order[i]] > p[order[i - 1]]);
    // Σ c_i = U pairs, c_i as even as possible, non-decreasing; then interleave in score order.
    const int64_t u = std::llround(curve_[evaluations_++] * kM * kM);
    std::vector<int64_t> c(kM, u / kM);
    for (int64_t i = 0; i < u % kM; ++i) ++c[kM - 1 - i];
    int64_t negatives = 0, next_positive = 0;
    for (size_t rank = 0; rank < order.size(); ++rank) {
      const bool positive = next_positive < kM && (negatives == c[next_positive] || negatives == kM);
      batch_.labels[order[rank]] = positive ? 1.0f : 0.0f;
      if (positive) ++next_positive;
      else ++negatives;
    }
    given_ = false;
  }
  bool next(data::Batch& out) override {
    if (given_) return false;
    out = batch_;
    given_ = true;
    return true;
  }
  size_t evaluations() const { return evaluations_; }

 private:
  static constexpr int64_t kM = 20;
  train::LocalTrainer<float> local_;
  std::vector<double> curve_;
  data::Batch batch_;
  size_t evaluations_ = 0;
  bool given_ = false;
};

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("Early stopping stops at the right epoch on a crafted curve; best/ is that epoch's "
          "checkpoint bitwise and is restored",
          "[train][selection]") {
  test::TempDir dir;
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  // AUC by epoch: best at epoch 3 (0.8), then 3 epochs without improvement: patience 3 stops
  // after epoch 6 (the 7th value is never evaluated).
  CraftedCurve valid(*model, ctx, {0.55, 0.7, 0.8, 0.75, 0.8, 0.6, 0.9});
  train::TrainerConfig c;
  c.log_every = 0;
  c.epochs = 10;
  c.checkpoint_dir = dir.file("ck");
  c.checkpoint_every = 4;  // one checkpoint per epoch (4 steps)
  c.keep_checkpoints = 100;
  c.early_stop_patience = 3;
  c.best_dir = dir.file("ck/best");
  c.metrics_path = dir.file("metrics.jsonl");
  train::Trainer trainer(*model, *comm, ctx, c);
  train::VectorBatchSource train_data(test::fixture_batches(4, 16));
  const auto r = trainer.fit(train_data, &valid);
  CHECK(r.early_stopped);
  CHECK(valid.evaluations() == 6);
  CHECK(r.steps == 6 * 4);
  CHECK(r.best_epoch == 3);
  CHECK(r.best_step == 12);
  CHECK(r.best_eval.auc == Approx(0.8));
  CHECK(r.restored_best);
  CHECK(r.last_eval.auc == Approx(0.6));

  // best/ holds exactly the files of the epoch-3 checkpoint (same step, same bytes).
  const fs::path best = c.best_dir, epoch3 = fs::path(c.checkpoint_dir) / "step-000000000012";
  for (const char* f : {"dense.safetensors", "optimizer.safetensors", "tables.safetensors"})
    CHECK(file_bytes(best / f) == file_bytes(epoch3 / f));
  // ... and the model now holds it.
  auto fresh = test::fixture_model(ctx);
  train::read_checkpoint(epoch3.string(), *fresh, ctx, 0);
  CHECK(train::model_state_hash(ctx, *model) == train::model_state_hash(ctx, *fresh));

  // The metrics file tells the same story: 6 validation lines, the 3rd improved last.
  std::ifstream in(c.metrics_path);
  std::string line;
  int evals = 0, last_improved = 0;
  bool early_stop_line = false;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "eval") {
      ++evals;
      CHECK(j["epoch"] == evals);  // 1-based
      if (j["selection"]["improved"].get<bool>()) last_improved = evals;
    }
    if (j["event"] == "early_stop") {
      early_stop_line = true;
      CHECK(j["best_epoch"] == 3);
      CHECK(j["best_step"] == 12);
    }
  }
  CHECK(evals == 6);
  CHECK(last_improved == 3);
  CHECK(early_stop_line);

  // The last checkpoint is of a finished run: resuming it trains nothing more.
  train::TrainerConfig again = c;
  again.resume = true;
  again.metrics_path.clear();
  auto resumed_model = test::fixture_model(ctx);
  CraftedCurve valid2(*resumed_model, ctx, {0.5});
  train::Trainer resumed(*resumed_model, *comm, ctx, again);
  const auto r2 = resumed.fit(train_data, &valid2);
  CHECK(r2.already_finished);
  CHECK(r2.steps == 0);
}

TEST_CASE("Evaluation every N steps selects within an epoch; log loss selects the lowest",
          "[train][selection]") {
  test::TempDir dir;
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  train::TrainerConfig c;
  c.log_every = 0;
  c.epochs = 2;
  c.eval_every = 2;
  c.select_metric = "logloss";
  c.best_dir = dir.file("best");
  c.restore_best = false;
  train::Trainer trainer(*model, *comm, ctx, c);
  train::VectorBatchSource train_data(test::fixture_batches(5, 16));
  train::VectorBatchSource valid(test::fixture_batches(1, 64, 90000));
  const auto r = trainer.fit(train_data, &valid);
  // Steps 2 and 4 of each 5-step epoch plus each epoch's end: 3 evaluations per epoch.
  CHECK_FALSE(r.early_stopped);
  CHECK_FALSE(r.restored_best);
  CHECK(r.best_step >= 2);
  CHECK(r.best_step <= 10);
  CHECK((r.best_step % 5 == 0 || r.best_step % 5 == 2 || r.best_step % 5 == 4));
  // best/ holds the model of best_step, whose validation log loss is the lowest seen.
  auto best = test::fixture_model(ctx);
  const auto meta = train::read_checkpoint(c.best_dir, *best, ctx, 0);
  CHECK(meta.step == r.best_step);
  train::Trainer check(*best, *comm, ctx, train::TrainerConfig{});
  const auto e = check.evaluate(valid);
  CHECK(e.logloss == r.best_eval.logloss);
  CHECK(e.logloss <= r.last_eval.logloss);
}

TEST_CASE("Without a best directory the best model is kept in memory and restored bitwise",
          "[train][selection]") {
  test::TempDir dir;
  Context ctx;
  auto comm = comm::create_communicator("local", ctx.device());
  auto model = test::fixture_model(ctx);
  CraftedCurve valid(*model, ctx, {0.6, 0.9, 0.7, 0.8, 0.85});
  train::TrainerConfig c;
  c.log_every = 0;
  c.epochs = 5;
  c.checkpoint_dir = dir.file("ck");  // for the comparison only: best_dir stays empty
  c.checkpoint_every = 4;
  c.keep_checkpoints = 100;
  c.keep_best_in_memory = true;
  train::Trainer trainer(*model, *comm, ctx, c);
  train::VectorBatchSource train_data(test::fixture_batches(4, 16));
  const auto r = trainer.fit(train_data, &valid);
  CHECK_FALSE(r.early_stopped);
  CHECK(r.best_step == 8);
  CHECK(r.restored_best);
  CHECK_FALSE(fs::exists(dir.file("ck/best")));
  auto epoch2 = test::fixture_model(ctx);
  train::read_checkpoint(dir.file("ck/step-000000000008"), *epoch2, ctx, 0);
  CHECK(train::model_state_hash(ctx, *model) == train::model_state_hash(ctx, *epoch2));
}

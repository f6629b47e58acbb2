#include "lockstep/train/evaluation.h"

namespace lockstep::train {

const BinaryMetrics* EvalResult::output(const std::string& name) const {
  for (size_t i = 0; i < output_names.size() && i < outputs.size(); ++i)
    if (output_names[i] == name) return &outputs[i];
  return nullptr;
}

Scores score(LocalTrainer<float>& model, BatchSource& data) {
  Scores s;
  s.output_names = model.model().output_names();
  s.probs.resize(s.output_names.size());
  data.start_epoch(0);
  data::Batch batch;
  while (data.next(batch)) {
    const auto p = model.predict_outputs(batch);
    for (size_t o = 0; o < p.size(); ++o) s.probs[o].insert(s.probs[o].end(), p[o].begin(), p[o].end());
    s.labels.insert(s.labels.end(), batch.labels.begin(), batch.labels.end());
    s.sample_ids.insert(s.sample_ids.end(), batch.sample_ids.begin(), batch.sample_ids.end());
  }
  return s;
}

EvalResult eval_result(const Scores& scores) {
  EvalResult r;
  r.output_names = scores.output_names;
  for (const auto& p : scores.probs) r.outputs.push_back(binary_metrics(p, scores.labels));
  r.samples = static_cast<int64_t>(scores.labels.size());
  if (!r.outputs.empty()) {
    r.auc = r.outputs[0].auc;
    r.logloss = r.outputs[0].logloss;
  }
  return r;
}

}  // namespace lockstep::train

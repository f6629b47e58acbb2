#pragma once
// The per-feasign rules of a dynamic table (issue 13, docs/feasign_store.md), after Paddle's
// CtrCommonAccessor: the show/click score, admission of the embedx vector (entry), decay and
// deletion at a boundary (shrink), and which feasigns a base or delta export carries. Plain
// functions of a feasign's statistics, so that the CPU table, the CUDA table and the tests apply
// one definition.

#include <cstdint>
#include <string_view>

namespace lockstep::embedding {

/// Thresholds and rates; the defaults are Paddle CtrCommonAccessor's.
struct AccessorConfig {
  float nonclk_coeff = 0.1f;           // score weight of a show without a click
  float click_coeff = 1.0f;            // score weight of a click
  float embedx_threshold = 10.0f;      // the embedx vector is created at this score
  float base_threshold = 1.5f;         // a base export carries feasigns from this score
  float delta_threshold = 0.25f;       // ... a delta export those that also gained this much
  int64_t delta_keep_days = 16;        // ... and were seen within this many boundaries
  float show_click_decay_rate = 0.98f;  // show and click are multiplied by it at a boundary
  float delete_threshold = 0.8f;       // deleted below this score (at a boundary)
  int64_t delete_after_unseen_days = 30;  // ... or when unseen for more boundaries than this
  /// Learning rate of the 1-dim lr (wide) weight; its optimizer is the table's sparse optimizer
  /// otherwise (embedx uses that optimizer's lr). Chosen by measurement (docs/feasign_store.md):
  /// every id of a sample adds its weight to the logit, and with adagrad's first steps of about
  /// ±lr for rare ids, Paddle's 0.05 cost 0.03 AUC on din-bench; 0.001 never hurt and helped on
  /// the demo data.
  float lr_learning_rate = 0.001f;
  /// Throws ConfigError naming `prefix`.<key> for a value out of range (coefficients and
  /// thresholds >= 0, the decay rate in (0, 1], days in [0, 100000]).
  void validate(std::string_view prefix) const;
};

/// What a dynamic table keeps per feasign besides its weights.
struct FeasignStats {
  float show = 0, click = 0;
  float delta_score = 0;  // score gained since the last successful save
  int32_t unseen_days = 0;
  bool seen = false;  // updated since the last boundary
};

/// (show − click)·nonclk_coeff + click·click_coeff.
float show_click_score(const AccessorConfig& c, float show, float click);
/// One batch's counts for the feasign (from every rank: the global counts): show and click grow,
/// the delta score by the score of these counts, and the feasign counts as seen.
void update_stats(const AccessorConfig& c, FeasignStats& s, float shows, float clicks);
/// Entry: whether the feasign has earned an embedx vector (score >= embedx_threshold).
bool admits_embedx(const AccessorConfig& c, const FeasignStats& s);
/// A boundary (every N steps, an epoch, a day marker): show and click decay; unseen_days grows
/// for a feasign not seen since the last boundary and is 0 for one that was. Returns whether the
/// feasign is then deleted (score < delete_threshold or unseen_days > delete_after_unseen_days).
bool shrink(const AccessorConfig& c, FeasignStats& s);
/// Export: a base carries every feasign with score >= base_threshold; a delta those that also
/// have delta_score >= delta_threshold and unseen_days <= delta_keep_days.
bool in_base(const AccessorConfig& c, const FeasignStats& s);
bool in_delta(const AccessorConfig& c, const FeasignStats& s);
/// After a successful save: the delta score starts again from 0.
inline void saved(FeasignStats& s) { s.delta_score = 0; }

}  // namespace lockstep::embedding

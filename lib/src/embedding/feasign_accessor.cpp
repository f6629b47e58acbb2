#include "lockstep/embedding/feasign_accessor.h"

#include <fmt/format.h>

#include "lockstep/core/error.h"

namespace lockstep::embedding {

void AccessorConfig::validate(std::string_view prefix) const {
  const auto key = [&](const char* k) { return fmt::format("{}.{}", prefix, k); };
  for (auto [name, v] : {std::pair<const char*, float>{"nonclk_coeff", nonclk_coeff},
                         {"click_coeff", click_coeff},
                         {"embedx_threshold", embedx_threshold},
                         {"base_threshold", base_threshold},
                         {"delta_threshold", delta_threshold},
                         {"delete_threshold", delete_threshold}})
    check_range(key(name), v, 0.0, 1e9);
  LOCKSTEP_CHECK_KEY(show_click_decay_rate > 0.0f && show_click_decay_rate <= 1.0f,
                     key("show_click_decay_rate"),
                     "{} = {} is out of range: must be in (0, 1]", key("show_click_decay_rate"),
                     show_click_decay_rate);
  check_range(key("delta_keep_days"), delta_keep_days, int64_t{0}, int64_t{100000});
  check_range(key("lr_learning_rate"), lr_learning_rate, 1e-12, 100.0);
  check_range(key("delete_after_unseen_days"), delete_after_unseen_days, int64_t{0},
              int64_t{100000});
}

float show_click_score(const AccessorConfig& c, float show, float click) {
  return (show - click) * c.nonclk_coeff + click * c.click_coeff;
}

void update_stats(const AccessorConfig& c, FeasignStats& s, float shows, float clicks) {
  s.show += shows;
  s.click += clicks;
  s.delta_score += show_click_score(c, shows, clicks);
  s.seen = true;
}

bool admits_embedx(const AccessorConfig& c, const FeasignStats& s) {
  return show_click_score(c, s.show, s.click) >= c.embedx_threshold;
}

bool shrink(const AccessorConfig& c, FeasignStats& s) {
  s.show *= c.show_click_decay_rate;
  s.click *= c.show_click_decay_rate;
  s.unseen_days = s.seen ? 0 : s.unseen_days + 1;
  s.seen = false;
  return show_click_score(c, s.show, s.click) < c.delete_threshold ||
         s.unseen_days > c.delete_after_unseen_days;
}

bool in_base(const AccessorConfig& c, const FeasignStats& s) {
  return show_click_score(c, s.show, s.click) >= c.base_threshold;
}

bool in_delta(const AccessorConfig& c, const FeasignStats& s) {
  return in_base(c, s) && s.delta_score >= c.delta_threshold &&
         s.unseen_days <= c.delta_keep_days;
}

}  // namespace lockstep::embedding

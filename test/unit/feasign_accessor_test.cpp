// The per-feasign rules of dynamic tables (issue 13): score, entry, shrink, base/delta export,
// with Paddle CtrCommonAccessor's defaults, and the configuration's range checks.
#include <catch2/catch.hpp>

#include "lockstep/core/error.h"
#include "lockstep/embedding/feasign_accessor.h"

using namespace lockstep;
using namespace lockstep::embedding;
using Catch::Matchers::Contains;

TEST_CASE("Feasign accessor: score and entry", "[embedding][feasign]") {
  const AccessorConfig c;  // nonclk 0.1, click 1, embedx at 10
  CHECK(show_click_score(c, 10, 2) == Approx(0.8 + 2));
  FeasignStats s;
  update_stats(c, s, 20, 3);  // 17·0.1 + 3 = 4.7
  CHECK(s.show == 20);
  CHECK(s.click == 3);
  CHECK(s.delta_score == Approx(4.7));
  CHECK(s.seen);
  CHECK_FALSE(admits_embedx(c, s));
  update_stats(c, s, 30, 5);  // 42·0.1 + 8 = 12.2
  CHECK(admits_embedx(c, s));
  CHECK(s.delta_score == Approx(12.2));
  // Without clicks it takes 100 shows.
  FeasignStats quiet;
  update_stats(c, quiet, 99, 0);
  CHECK_FALSE(admits_embedx(c, quiet));
  update_stats(c, quiet, 1, 0);
  CHECK(admits_embedx(c, quiet));
}

TEST_CASE("Feasign accessor: shrink decays, counts unseen boundaries and deletes",
          "[embedding][feasign]") {
  const AccessorConfig c;  // decay 0.98, delete below 0.8 or after 30 unseen boundaries
  FeasignStats s;
  update_stats(c, s, 100, 10);  // score 9 + 10 = 19
  CHECK_FALSE(shrink(c, s));
  CHECK(s.show == Approx(98));
  CHECK(s.click == Approx(9.8));
  CHECK(s.unseen_days == 0);  // seen since the last boundary
  CHECK_FALSE(s.seen);
  for (int day = 1; day <= 30; ++day) {
    INFO("boundary " << day);
    REQUIRE_FALSE(shrink(c, s));
    REQUIRE(s.unseen_days == day);
  }
  CHECK(shrink(c, s));  // unseen for 31 > 30 boundaries
  update_stats(c, s, 1, 0);
  CHECK_FALSE(shrink(c, s));
  CHECK(s.unseen_days == 0);  // seen again: back to 0

  FeasignStats rare;
  update_stats(c, rare, 5, 0);  // score 0.5 < 0.8
  CHECK(shrink(c, rare));
  FeasignStats edge;
  update_stats(c, edge, 8, 0);  // 0.8, decays to 0.784 < 0.8
  CHECK(shrink(c, edge));
}

TEST_CASE("Feasign accessor: base and delta exports", "[embedding][feasign]") {
  const AccessorConfig c;  // base from 1.5; delta: also delta_score >= 0.25, unseen <= 16
  FeasignStats s;
  update_stats(c, s, 10, 1);  // 0.9 + 1 = 1.9
  CHECK(in_base(c, s));
  CHECK(in_delta(c, s));
  saved(s);
  CHECK(s.delta_score == 0);
  CHECK(in_base(c, s));
  CHECK_FALSE(in_delta(c, s));  // nothing new since the save
  update_stats(c, s, 3, 0);     // +0.3
  CHECK(in_delta(c, s));
  for (int day = 0; day < 17; ++day) shrink(c, s);  // seen, then 16 unseen boundaries
  CHECK(s.unseen_days == 16);
  CHECK(in_delta(c, s));
  shrink(c, s);
  CHECK_FALSE(in_delta(c, s));  // unseen for 17 > 16
  FeasignStats low;
  update_stats(c, low, 10, 0);  // 1.0 < 1.5
  CHECK_FALSE(in_base(c, low));
  CHECK_FALSE(in_delta(c, low));
}

TEST_CASE("Feasign accessor configuration: range errors name the key", "[embedding][feasign]") {
  AccessorConfig c;
  CHECK_NOTHROW(c.validate("model.tables[2].accessor"));
  c.show_click_decay_rate = 0;
  CHECK_THROWS_WITH(c.validate("model.tables[2].accessor"),
                    Contains("model.tables[2].accessor.show_click_decay_rate = 0"));
  c = AccessorConfig{};
  c.embedx_threshold = -1;
  CHECK_THROWS_WITH(c.validate("t"), Contains("t.embedx_threshold"));
  c = AccessorConfig{};
  c.delete_after_unseen_days = -3;
  CHECK_THROWS_AS(c.validate("t"), ConfigError);
}

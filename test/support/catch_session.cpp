// Catch2's implementation, compiled once for every test executable (each has its own main that
// calls run_catch_session): the runners no longer compile it once each.
#define CATCH_CONFIG_RUNNER
#include "catch_session.h"

#include <catch2/catch.hpp>

int lockstep::test::run_catch_session(int argc, char** argv) {
  // Catch2 returns the number of failed assertions (capped at 255): 77 of them would read as
  // "skipped" to ctest (SKIP_RETURN_CODE 77).
  return Catch::Session().run(argc, argv) == 0 ? 0 : 1;
}

#pragma once
// The test runners' entry into Catch2, whose implementation (and Catch::Session) is compiled
// once, in catch_session.cpp, instead of in every runner's main.

namespace lockstep::test {

/// Catch::Session().run(argc, argv): runs the test cases the command line selects and returns
/// 0 when all passed, else 1 (never 77, ctest's "skipped") — what a runner's main returns.
int run_catch_session(int argc, char** argv);

}  // namespace lockstep::test

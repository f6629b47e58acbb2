#pragma once
// Cases of train::StepGraphs run on the CPU stand-in (test/unit/step_graphs_test.cpp) and on
// CUDA (test/gpu/graphs_test.cpp): the same region, the same expected statistics.

#include <catch2/catch.hpp>

#include <functional>
#include <stdexcept>
#include <vector>

#include "kernels/init.h"
#include "lockstep/core/tensor.h"
#include "train/step_graphs.h"

namespace lockstep::test {

/// The key's region throws an exception that is not lockstep's in its capture (the third run):
/// it goes through (on CUDA, after the capture is ended: the stream is usable again), and the
/// key starts over, is captured and replayed.
inline void check_foreign_exception_in_capture(const Context& ctx) {
  Tensor<float> out;
  out.resize(ctx, {4});
  train::StepGraphs graphs(ctx);
  int calls = 0;
  const std::function<const void*()> region = [&]() -> const void* {
    kernels::fill_constant<float>(ctx, 4, 1.0f, out.data());
    if (++calls == 3) throw std::runtime_error("not lockstep's");
    return out.data();
  };
  graphs.run({7}, region);
  graphs.run({7}, region);
  CHECK(graphs.stats().captured == 0);
  CHECK_THROWS_WITH(graphs.run({7}, region), "not lockstep's");
  CHECK(graphs.stats().captured == 0);
  ctx.synchronize();  // on CUDA, fails while the stream is still capturing
  for (int i = 0; i < 6; ++i) {
    kernels::fill_constant<float>(ctx, 4, -1.0f, out.data());
    graphs.run({7}, region);
    CHECK(to_host(ctx, out.data(), 4)[0] == 1.0f);  // run: replayed or not
  }
  CHECK(graphs.stats().captured == 1);
  CHECK(graphs.stats().replayed >= 1);
}

/// The key's region frees a buffer in a capture (run 3) and in a replay's host pass (run 6):
/// each time the step runs eagerly and the key starts over.
inline void check_region_that_frees(const Context& ctx) {
  Tensor<float> out;
  out.resize(ctx, {4});
  std::vector<Tensor<float>> scratch(4);
  for (auto& t : scratch) t.resize(ctx, {16});
  train::StepGraphs graphs(ctx);
  bool free_one = false;
  const std::function<const void*()> region = [&]() -> const void* {
    kernels::fill_constant<float>(ctx, 4, 1.0f, out.data());
    if (free_one) scratch.pop_back();
    free_one = false;
    return out.data();
  };
  for (int i = 0; i < 10; ++i) {
    free_one = i == 2 || i == 5;
    kernels::fill_constant<float>(ctx, 4, -1.0f, out.data());
    graphs.run({7}, region);
    CHECK(to_host(ctx, out.data(), 4)[0] == 1.0f);
  }
  CHECK(scratch.size() == 2);
  CHECK(graphs.stats().fallbacks == 2);
  CHECK(graphs.stats().captured == 3);  // runs 3 (given up), 5 and 8
  CHECK(graphs.stats().replayed == 2);  // runs 9 and 10
}

}  // namespace lockstep::test

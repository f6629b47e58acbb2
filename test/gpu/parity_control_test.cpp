// CUDA vs CPU for the control-block count encoding of the lockstep step (kernels/control.h).

#include <catch2/catch.hpp>

#include "gpu_util.h"
#include "kernels/control.h"

using namespace lockstep;

TEST_CASE("CUDA encode_count_chunks matches the CPU", "[gpu][control]") {
  test::ParityContexts pc;
  for (const int64_t v : {int64_t{0}, int64_t{1}, int64_t{65536}, (int64_t{1} << 62) + 977,
                          int64_t{-3}}) {
    INFO("value " << v);
    float cpu[4];
    kernels::encode_count_chunks<float>(pc.cpu, &v, cpu);
    const auto d_value = test::to_gpu(pc.gpu, std::vector<int64_t>{v});
    auto d_chunks = test::to_gpu(pc.gpu, std::vector<float>(6, -7.0f));
    kernels::encode_count_chunks<float>(pc.gpu, d_value.data(), d_chunks.data() + 1);
    const auto gpu = to_host(pc.gpu, d_chunks);
    CHECK(gpu[0] == -7.0f);  // neighbours untouched
    CHECK(gpu[5] == -7.0f);
    for (int c = 0; c < 4; ++c) CHECK(gpu[c + 1] == cpu[c]);
  }
}

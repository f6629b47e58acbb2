// CUDA vs CPU reference for the multi-head attention core (kernels/attention.h), padding keys
// never read, and run-to-run bitwise determinism.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "gpu_util.h"
#include "kernels/attention.h"
#include "sequence_parity_util.h"

using namespace lockstep;
using namespace lockstep::test::sequence_parity;
using test::test_lengths;

TEST_CASE("CUDA attention matches the CPU reference and is deterministic", "[gpu][attention]") {
  test::ParityContexts ctx;
  struct Shape {
    int64_t B, L, heads, dh;
  };
  // bst-bench at batch 4096, one head, a long sequence, heads of width 1, L = 1.
  for (const Shape& s : {Shape{4096, 21, 8, 4}, Shape{5, 7, 1, 16}, Shape{3, 200, 2, 8},
                         Shape{9, 5, 3, 1}, Shape{3, 1, 2, 3}}) {
    DYNAMIC_SECTION("B " << s.B << " L " << s.L << " heads " << s.heads << " dh " << s.dh) {
      const int64_t d = s.heads * s.dh, ld = 3 * d, L = s.L, np = s.B * s.heads * L * L;
      const auto lengths = test_lengths(s.B, L, 111 + L);
      auto qkv = test::random_vector<float>(s.B * L * ld, 112, -2.0, 2.0);
      for (int64_t b = 0; b < s.B; ++b)  // K and V of padding positions are never read
        for (int64_t t = lengths[b]; t < L; ++t)
          for (int64_t c = d; c < ld; ++c) qkv[(b * L + t) * ld + c] = kNaNf;
      const auto dout = test::random_vector<float>(s.B * L * d, 113);
      const float scale = 1.f / std::sqrt(float(s.dh));

      std::vector<float> probs(np), out(s.B * L * d), ds(np), dqkv(qkv.size());
      kernels::attention_forward<float>(ctx.cpu, s.B, L, s.heads, s.dh, scale, lengths.data(),
                                        qkv.data(), probs.data(), out.data());
      kernels::attention_backward<float>(ctx.cpu, s.B, L, s.heads, s.dh, scale, lengths.data(),
                                         qkv.data(), probs.data(), dout.data(), ds.data(),
                                         dqkv.data());

      const auto len_g = test::to_gpu(ctx.gpu, lengths);
      const auto qkv_g = test::to_gpu(ctx.gpu, qkv), dout_g = test::to_gpu(ctx.gpu, dout);
      auto probs_g = test::to_gpu(ctx.gpu, std::vector<float>(np, kSentinel));
      auto out_g = test::to_gpu(ctx.gpu, std::vector<float>(out.size(), kSentinel));
      kernels::attention_forward<float>(ctx.gpu, s.B, L, s.heads, s.dh, scale, len_g.data(),
                                        qkv_g.data(), probs_g.data(), out_g.data());
      const auto probs_1 = host(ctx.gpu, probs_g), out_1 = host(ctx.gpu, out_g);
      test::require_close(probs_1, probs, 1e-7, kElemRtol, "attention probs");
      test::require_close(out_1, out, reduce_atol(L), kReduceRtol, "attention out");
      REQUIRE(test::any_nonzero(out_1));

      // Backward from the CPU's probs on both sides, so only the backward is compared.
      const auto probs_c = test::to_gpu(ctx.gpu, probs);
      auto ds_g = test::to_gpu(ctx.gpu, std::vector<float>(np, kSentinel));
      auto dqkv_g = test::to_gpu(ctx.gpu, std::vector<float>(qkv.size(), kSentinel));
      kernels::attention_backward<float>(ctx.gpu, s.B, L, s.heads, s.dh, scale, len_g.data(),
                                         qkv_g.data(), probs_c.data(), dout_g.data(), ds_g.data(),
                                         dqkv_g.data());
      const auto dqkv_1 = host(ctx.gpu, dqkv_g);
      test::require_close(host(ctx.gpu, ds_g), ds, reduce_atol(s.dh), kReduceRtol, "attention dS");
      test::require_close(dqkv_1, dqkv, reduce_atol(L, 2.0), kReduceRtol, "attention dqkv");
      REQUIRE(test::any_nonzero(dqkv_1));
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = lengths[b]; t < L; ++t)
          for (int64_t c = d; c < ld; ++c) REQUIRE(dqkv_1[(b * L + t) * ld + c] == 0.f);

      // Run to run: the same bits.
      kernels::attention_forward<float>(ctx.gpu, s.B, L, s.heads, s.dh, scale, len_g.data(),
                                        qkv_g.data(), probs_g.data(), out_g.data());
      test::require_bitwise_equal(host(ctx.gpu, out_g), out_1, "attention forward run to run");
      kernels::attention_backward<float>(ctx.gpu, s.B, L, s.heads, s.dh, scale, len_g.data(),
                                         qkv_g.data(), probs_c.data(), dout_g.data(), ds_g.data(),
                                         dqkv_g.data());
      test::require_bitwise_equal(host(ctx.gpu, dqkv_g), dqkv_1, "attention backward run to run");
    }
  }
}

// CPU reference of the multi-head attention core (kernels/attention.h): the forward against a
// long-double evaluation of the definition, padding keys never read, the backward against
// central finite differences, the same bits with 1, 2 and 3 threads, and the argument checks.

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "kernels/attention.h"
#include "lockstep/core/error.h"
#include "sequence_lengths.h"
#include "strided.h"
#include "test_util.h"

using namespace lockstep;
using namespace lockstep::test;
using Catch::Matchers::Contains;

namespace {

struct AttnShape {
  int64_t B, L, heads, dh;
};

/// P and O of the header's definition, in long double.
template <class T>
void attention_reference(const AttnShape& s, const std::vector<int64_t>& lengths,
                         const std::vector<T>& qkv, std::vector<long double>& probs,
                         std::vector<long double>& out) {
  const int64_t d = s.heads * s.dh, ld = 3 * d, L = s.L;
  const long double scale = 1.0L / std::sqrt(static_cast<long double>(s.dh));
  probs.assign(static_cast<size_t>(s.B * s.heads * L * L), 0.0L);
  out.assign(static_cast<size_t>(s.B * L * d), 0.0L);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.heads; ++i)
      for (int64_t q = 0; q < L; ++q) {
        const int64_t len = lengths[b];
        if (len == 0) continue;
        std::vector<long double> e(static_cast<size_t>(len));
        long double mx = -INFINITY, z = 0;
        for (int64_t k = 0; k < len; ++k) {
          long double dot = 0;
          for (int64_t c = 0; c < s.dh; ++c)
            dot += static_cast<long double>(qkv[(b * L + q) * ld + i * s.dh + c]) *
                   qkv[(b * L + k) * ld + d + i * s.dh + c];
          e[k] = dot * scale;
          mx = std::max(mx, e[k]);
        }
        for (auto& v : e) z += (v = std::exp(v - mx));
        for (int64_t k = 0; k < len; ++k) {
          const long double p = e[k] / z;
          probs[((b * s.heads + i) * L + q) * L + k] = p;
          for (int64_t c = 0; c < s.dh; ++c)
            out[(b * L + q) * d + i * s.dh + c] += p * qkv[(b * L + k) * ld + 2 * d + i * s.dh + c];
        }
      }
}

}  // namespace

TEMPLATE_TEST_CASE("attention_forward is the masked multi-head attention; padding keys unread",
                   "[kernels][attention]", float, double) {
  using T = TestType;
  Context ctx;
  // bst-bench's heads (8 × 4), one head, a long sequence, heads of width 1, and L = 1.
  for (const AttnShape& s : {AttnShape{6, 21, 8, 4}, AttnShape{5, 7, 1, 16}, AttnShape{3, 70, 2, 8},
                             AttnShape{4, 5, 3, 1}, AttnShape{3, 1, 2, 3}}) {
    DYNAMIC_SECTION("B " << s.B << " L " << s.L << " heads " << s.heads << " dh " << s.dh) {
      const int64_t d = s.heads * s.dh, ld = 3 * d, L = s.L;
      const auto lengths = test_lengths(s.B, L, 81 + L);
      auto qkv = random_vector<T>(s.B * L * ld, 82, -2.0, 2.0);
      // K and V of padding positions must never be read (Q of every position is: every query
      // row is computed, as the padded formulation does).
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = lengths[b]; t < L; ++t)
          for (int64_t c = d; c < ld; ++c) qkv[(b * L + t) * ld + c] = T(kNaN);
      std::vector<T> probs(s.B * s.heads * L * L, T(kSentinel)), out(s.B * L * d, T(kSentinel));
      const T scale = T(1) / std::sqrt(T(s.dh));
      kernels::attention_forward<T>(ctx, s.B, L, s.heads, s.dh, scale, lengths.data(), qkv.data(),
                                    probs.data(), out.data());
      std::vector<long double> p_ref, o_ref;
      attention_reference(s, lengths, qkv, p_ref, o_ref);
      require_close(probs, p_ref, fwd_tol<T>() * 0.1, fwd_tol<T>(), "probs");
      require_close(out, o_ref, fwd_tol<T>() * 0.1, fwd_tol<T>(), "out");
      REQUIRE(any_nonzero(out));
      for (int64_t b = 0; b < s.B; ++b)  // masked keys and empty samples: exact zeros
        for (int64_t r = 0; r < s.heads * L; ++r)
          for (int64_t k = lengths[b]; k < L; ++k)
            REQUIRE(probs[(b * s.heads * L + r) * L + k] == T(0));
    }
  }
}

TEST_CASE("attention_backward matches central differences", "[kernels][attention]") {
  Context ctx;
  for (const AttnShape& s : {AttnShape{5, 6, 2, 3}, AttnShape{3, 4, 1, 5}, AttnShape{2, 1, 3, 2}}) {
    DYNAMIC_SECTION("B " << s.B << " L " << s.L << " heads " << s.heads << " dh " << s.dh) {
      const int64_t d = s.heads * s.dh, ld = 3 * d, L = s.L;
      const auto lengths = test_lengths(s.B, L, 91 + L);
      auto qkv = random_vector<double>(s.B * L * ld, 92, -1.5, 1.5);
      const auto proj = random_vector<double>(s.B * L * d, 93);
      const double scale = 1.0 / std::sqrt(double(s.dh));
      std::vector<double> probs(s.B * s.heads * L * L), out(s.B * L * d);
      const auto loss = [&] {
        kernels::attention_forward<double>(ctx, s.B, L, s.heads, s.dh, scale, lengths.data(),
                                           qkv.data(), probs.data(), out.data());
        return project(proj, out);
      };
      loss();
      std::vector<double> ds(probs.size(), kSentinel), dqkv(qkv.size(), 555.0);  // overwritten
      kernels::attention_backward<double>(ctx, s.B, L, s.heads, s.dh, scale, lengths.data(),
                                          qkv.data(), probs.data(), proj.data(), ds.data(),
                                          dqkv.data());
      check_gradient("attention dqkv", loss, qkv.data(), dqkv.data(), s.B * L * ld);
      REQUIRE(any_nonzero(dqkv));
      for (int64_t b = 0; b < s.B; ++b)  // K and V of padding positions get exact zeros
        for (int64_t t = lengths[b]; t < L; ++t)
          for (int64_t c = d; c < ld; ++c) REQUIRE(dqkv[(b * L + t) * ld + c] == 0.0);
    }
  }
}

TEST_CASE("attention kernels give the same bits with 1, 2 and 3 threads", "[kernels][parallel]") {
  const AttnShape s{37, 21, 8, 4};
  const int64_t d = s.heads * s.dh, ld = 3 * d, L = s.L;
  const auto lengths = test_lengths(s.B, L, 101);
  const auto qkv = random_vector<float>(s.B * L * ld, 102, -2.0, 2.0);
  const auto dout = random_vector<float>(s.B * L * d, 103);
  const auto run = [&](int threads) {
    Context ctx(Device::cpu(), ContextOptions{false, threads});
    std::vector<float> probs(s.B * s.heads * L * L), out(s.B * L * d), ds(probs.size()),
        dqkv(qkv.size());
    kernels::attention_forward<float>(ctx, s.B, L, s.heads, s.dh, 0.5f, lengths.data(), qkv.data(),
                                      probs.data(), out.data());
    kernels::attention_backward<float>(ctx, s.B, L, s.heads, s.dh, 0.5f, lengths.data(), qkv.data(),
                                       probs.data(), dout.data(), ds.data(), dqkv.data());
    out.insert(out.end(), dqkv.begin(), dqkv.end());
    out.insert(out.end(), probs.begin(), probs.end());
    return out;
  };
  const auto one = run(1);
  REQUIRE(any_nonzero(one));
  require_bitwise_equal(run(2), one, "2 threads");
  require_bitwise_equal(run(3), one, "3 threads");
}

TEST_CASE("attention kernels reject bad arguments by name", "[kernels][attention]") {
  Context ctx;
  std::vector<float> qkv(2 * 3 * 6), probs(2 * 2 * 3 * 3), out(2 * 3 * 2);
  std::vector<int64_t> lengths = {3, 4};
  REQUIRE_THROWS_WITH(kernels::attention_forward<float>(ctx, 2, 3, 2, 1, 1.f, lengths.data(),
                                                        qkv.data(), probs.data(), out.data()),
                      Contains("attention_forward: lengths[1] = 4 is outside [0, L = 3]"));
  lengths[1] = 1;
  REQUIRE_THROWS_WITH(kernels::attention_forward<float>(ctx, 2, 3, 0, 1, 1.f, lengths.data(),
                                                        qkv.data(), probs.data(), out.data()),
                      Contains("attention_forward: heads = 0"));
  REQUIRE_THROWS_WITH(
      kernels::attention_backward<float>(ctx, 2, 3, 2, 0, 1.f, lengths.data(), qkv.data(),
                                         probs.data(), out.data(), probs.data(), qkv.data()),
      Contains("attention_backward: dh = 0"));
  REQUIRE_THROWS_WITH(
      kernels::attention_backward<float>(ctx, -1, 3, 2, 1, 1.f, lengths.data(), qkv.data(),
                                         probs.data(), out.data(), probs.data(), qkv.data()),
      Contains("attention_backward") && Contains("B"));
}

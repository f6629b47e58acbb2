// Finite-difference gradient checks (double, CPU) of the interaction layers of the dual DNN's
// teacher: FM bi-interaction and the DCN cross network, over strided inputs and outputs.
#include <catch2/catch.hpp>

#include "gradcheck.h"
#include "lockstep/nn/cross_network.h"
#include "lockstep/nn/fm.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;

TEST_CASE("FmInteraction: forward formula and finite-difference gradient of the input",
          "[nn][gradcheck][interaction]") {
  Context ctx;
  for (auto [B, F, D] : {std::tuple{1, 1, 1}, std::tuple{4, 3, 5}, std::tuple{3, 6, 2}}) {
    DYNAMIC_SECTION("B " << B << " F " << F << " D " << D) {
      const int64_t ldv = F * D + 3, ldo = D + 2;  // strided: the fields sit inside wider rows
      nn::FmInteraction<double> fm(F, D);
      REQUIRE(fm.output_width() == D);
      auto v = test::random_vector<double>(B * ldv, 1);
      const auto w = test::random_vector<double>(B * ldo, 2);  // L = Σ w ⊙ out (valid columns)
      std::vector<double> out(B * ldo, 0.0);
      const auto loss = [&] {
        fm.forward(ctx, B, v.data(), ldv, out.data(), ldo);
        double s = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t d = 0; d < D; ++d) s += w[b * ldo + d] * out[b * ldo + d];
        return s;
      };
      loss();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t d = 0; d < D; ++d) {
          double sum = 0, sq = 0;
          for (int64_t f = 0; f < F; ++f) {
            const double x = v[b * ldv + f * D + d];
            sum += x;
            sq += x * x;
          }
          CHECK(out[b * ldo + d] == Approx(0.5 * (sum * sum - sq)).margin(1e-12));
        }
      // The backward accumulates: start from a non-zero gradient and subtract it.
      const auto start = test::random_vector<double>(B * ldv, 3);
      std::vector<double> dv = start;
      fm.backward(ctx, w.data(), ldo, dv.data(), ldv);
      std::vector<double> analytic(B * ldv, 0.0);
      std::vector<int64_t> indices;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < F * D; ++j) {
          analytic[b * ldv + j] = dv[b * ldv + j] - start[b * ldv + j];
          indices.push_back(b * ldv + j);
        }
      // Padding columns of dv are untouched.
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = F * D; j < ldv; ++j) CHECK(dv[b * ldv + j] == start[b * ldv + j]);
      if (F == 1) {  // one field: no interaction, output and gradient are zero
        CHECK_FALSE(test::any_nonzero(analytic));
        continue;
      }
      test::check_gradient("dv", loss, v.data(), analytic.data(), B * ldv, indices);
    }
  }
  CHECK_THROWS_WITH(nn::FmInteraction<double>(0, 4), Contains("fm.fields = 0"));
}

TEST_CASE("CrossNetwork: finite-difference gradients of weights, biases and x0",
          "[nn][gradcheck][interaction]") {
  Context ctx;
  for (auto [B, n, layers] : {std::tuple{1, 1, 1}, std::tuple{5, 6, 3}, std::tuple{3, 4, 2}}) {
    DYNAMIC_SECTION("B " << B << " n " << n << " layers " << layers) {
      nn::ParamSet<double> ps;
      nn::CrossNetwork<double> cross(ps, "cross", n, layers);
      ps.allocate(ctx, 7);
      REQUIRE(ps.find("cross.0.weight") >= 0);
      REQUIRE(cross.layers() == layers);
      // Non-zero biases so that every term of the backward matters.
      for (int64_t l = 0; l < layers; ++l) {
        const auto b = test::random_vector<double>(n, 10 + l);
        std::copy(b.begin(), b.end(), ps.value(ps.find(fmt::format("cross.{}.bias", l))));
      }
      const int64_t ldo = n + 3;
      auto x0 = test::random_vector<double>(B * n, 1);
      const auto w = test::random_vector<double>(B * ldo, 2);
      std::vector<double> out(B * ldo, 0.0);
      const auto loss = [&] {
        cross.forward(ctx, B, x0.data(), out.data(), ldo);
        double s = 0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < n; ++j) s += w[b * ldo + j] * out[b * ldo + j];
        return s;
      };
      ps.zero_grad(ctx);
      loss();
      const auto start = test::random_vector<double>(B * n, 3);
      std::vector<double> dx0 = start;  // accumulates
      cross.backward(ctx, w.data(), ldo, dx0.data());
      std::vector<double> analytic(B * n);
      for (size_t i = 0; i < analytic.size(); ++i) analytic[i] = dx0[i] - start[i];
      test::check_gradient("weights, biases", loss, ps.values(), ps.grads(), ps.size());
      test::check_gradient("dx0", loss, x0.data(), analytic.data(), B * n);
    }
  }
  nn::ParamSet<double> ps;
  CHECK_THROWS_WITH(nn::CrossNetwork<double>(ps, "teacher.cross", 4, 0),
                    Contains("teacher.cross.layers = 0"));
}

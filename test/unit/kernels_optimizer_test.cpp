// CPU reference of the fused optimizers: each rule against a scalar double-precision
// re-implementation of the formula in kernels/optimizer.h over several steps; sparse updates
// touch only the listed rows; sparse Adam over every row is dense Adam.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/input_errors.h"
#include "kernels/optimizer.h"
#include "lockstep/core/error.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using kernels::AdagradHyper;
using kernels::AdamHyper;
using kernels::SgdHyper;

namespace {

template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- Scalar references, written from the formulas in optimizer.h, in double.

void ref_sgd(const SgdHyper& h, double s, double grad, double& p, double& vel) {
  double g = s * grad;
  g += double(h.weight_decay) * p;
  if (h.momentum == 0.0f) {
    p -= double(h.lr) * g;
    return;
  }
  vel = double(h.momentum) * vel + g;
  p -= double(h.lr) * (h.nesterov ? g + double(h.momentum) * vel : vel);
}

void ref_adam(const AdamHyper& h, int64_t step, double s, double grad, double& p, double& m,
              double& v) {
  const double g = s * grad, b1 = h.beta1, b2 = h.beta2;
  m = b1 * m + (1 - b1) * g;
  v = b2 * v + (1 - b2) * g * g;
  const double m_hat = m / (1 - std::pow(b1, double(step)));
  const double v_hat = v / (1 - std::pow(b2, double(step)));
  p = p - double(h.lr) * m_hat / (std::sqrt(v_hat) + double(h.eps)) -
      double(h.lr) * double(h.weight_decay) * p;
}

void ref_adagrad(const AdagradHyper& h, double s, double grad, double& p, double& acc) {
  const double g = s * grad;
  acc += g * g;
  p -= double(h.lr) * g / (std::sqrt(acc) + double(h.eps));
}

}  // namespace

TEMPLATE_TEST_CASE("sgd_update follows its formula over several steps", "[kernels][optimizer]",
                   float, double) {
  using T = TestType;
  Context ctx;
  const int64_t n = 37;
  const T grad_scale = T(0.25);
  struct Case {
    float momentum, weight_decay;
    bool nesterov;
  };
  int config = 0;
  for (const Case c : {Case{0.0f, 0.0f, false}, Case{0.9f, 0.0f, false}, Case{0.9f, 0.0f, true},
                       Case{0.8f, 0.05f, true}, Case{0.0f, 0.05f, false}}) {
    ++config;
    INFO("momentum " << c.momentum << " weight_decay " << c.weight_decay << " nesterov "
                     << c.nesterov);
    SgdHyper h;
    h.lr = 0.1f;
    h.momentum = c.momentum;
    h.weight_decay = c.weight_decay;
    h.nesterov = c.nesterov;
    auto param = test::random_vector<T>(n, 10 * config);
    std::vector<T> velocity(n, T(0));
    auto ref_p = as_double(param);
    std::vector<double> ref_v(n, 0.0);
    const auto start = param;
    for (int step = 0; step < 4; ++step) {
      const auto grad = test::random_vector<T>(n, 10 * config + 1 + step);
      kernels::sgd_update<T>(ctx, h, grad_scale, n, param.data(), grad.data(),
                             c.momentum == 0.0f ? nullptr : velocity.data());
      for (int64_t i = 0; i < n; ++i) ref_sgd(h, double(grad_scale), grad[i], ref_p[i], ref_v[i]);
    }
    test::require_close(param, ref_p, tolerance<T>(), tolerance<T>(), "param");
    test::require_close(velocity, ref_v, tolerance<T>(), tolerance<T>(), "velocity");
    CHECK(param != start);
  }
}

TEMPLATE_TEST_CASE("adam_update follows its formula, bias correction included",
                   "[kernels][optimizer]", float, double) {
  using T = TestType;
  Context ctx;
  const int64_t n = 29;
  const T grad_scale = T(0.5);
  for (const float weight_decay : {0.0f, 0.1f}) {
    INFO("weight_decay " << weight_decay);
    AdamHyper h;
    h.lr = 0.01f;
    h.weight_decay = weight_decay;
    auto param = test::random_vector<T>(n, 40);
    std::vector<T> m(n, T(0)), v(n, T(0));
    auto ref_p = as_double(param);
    std::vector<double> ref_m(n, 0.0), ref_v(n, 0.0);
    // Steps 1..5, then a late step (bias correction of beta2 still far from 1 at step 100).
    for (const int64_t step : {1, 2, 3, 4, 5, 100}) {
      const auto grad = test::random_vector<T>(n, 41 + step);
      const auto before = param;
      kernels::adam_update<T>(ctx, h, step, grad_scale, n, param.data(), grad.data(), m.data(),
                              v.data());
      for (int64_t i = 0; i < n; ++i)
        ref_adam(h, step, double(grad_scale), grad[i], ref_p[i], ref_m[i], ref_v[i]);
      if (step == 1 && weight_decay == 0.0f) {
        // Bias-corrected first step: m_hat = g and sqrt(v_hat) = |g|, so every parameter
        // moves by lr against the sign of its gradient (eps is negligible here).
        for (int64_t i = 0; i < n; ++i) {
          CHECK(double(before[i] - param[i]) ==
                Approx(h.lr * (grad[i] > 0 ? 1 : -1)).epsilon(1e-3));
        }
      }
      INFO("step " << step);
      test::require_close(param, ref_p, tolerance<T>(), tolerance<T>(), "param");
      test::require_close(m, ref_m, tolerance<T>(), tolerance<T>(), "m");
      test::require_close(v, ref_v, tolerance<T>(), tolerance<T>(), "v");
    }
  }
}

TEMPLATE_TEST_CASE("adagrad_update follows its formula over several steps", "[kernels][optimizer]",
                   float, double) {
  using T = TestType;
  Context ctx;
  const int64_t n = 31;
  AdagradHyper h;
  h.lr = 0.05f;
  const T grad_scale = T(2);
  auto param = test::random_vector<T>(n, 60);
  auto accum = test::random_vector<T>(n, 61, 0.0, 0.5);
  auto ref_p = as_double(param), ref_acc = as_double(accum);
  for (int step = 0; step < 4; ++step) {
    const auto grad = test::random_vector<T>(n, 62 + step);
    kernels::adagrad_update<T>(ctx, h, grad_scale, n, param.data(), grad.data(), accum.data());
    for (int64_t i = 0; i < n; ++i)
      ref_adagrad(h, double(grad_scale), grad[i], ref_p[i], ref_acc[i]);
  }
  test::require_close(param, ref_p, tolerance<T>(), tolerance<T>(), "param");
  test::require_close(accum, ref_acc, tolerance<T>(), tolerance<T>(), "accum");
}

namespace {

// A sparse gradient: rows `ids` of a table plus max_unique - ids.size() rows of large garbage
// past num_unique, which the update must never apply.
template <class T>
struct SparseGrad {
  std::vector<uint64_t> ids;
  std::vector<T> rows;
  int64_t num_unique, max_unique;
};

template <class T>
SparseGrad<T> sparse_grad(const std::vector<uint64_t>& ids, int64_t max_unique, int64_t dim,
                          uint64_t seed) {
  SparseGrad<T> g{ids, test::random_vector<T>(max_unique * dim, seed),
                  static_cast<int64_t>(ids.size()), max_unique};
  g.ids.resize(static_cast<size_t>(max_unique), 0);  // garbage ids point at row 0
  for (int64_t i = g.num_unique * dim; i < max_unique * dim; ++i) g.rows[i] = T(1000);
  return g;
}

// Rows of `after` not in `touched` are bitwise equal to `before`.
template <class T>
void require_untouched_rows_unchanged(const std::vector<T>& before, const std::vector<T>& after,
                                      int64_t rows, int64_t width,
                                      const std::vector<uint64_t>& touched, const char* what) {
  for (int64_t r = 0; r < rows; ++r) {
    if (std::find(touched.begin(), touched.end(), static_cast<uint64_t>(r)) != touched.end())
      continue;
    INFO(what << " row " << r);
    test::require_bitwise_equal(
        std::vector<T>(before.begin() + r * width, before.begin() + (r + 1) * width),
        std::vector<T>(after.begin() + r * width, after.begin() + (r + 1) * width), what);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("sparse_adagrad_update applies row-wise Adagrad to the listed rows only",
                   "[kernels][optimizer]", float, double) {
  using T = TestType;
  Context ctx;
  AdagradHyper h;
  h.lr = 0.1f;
  const T grad_scale = T(0.5);
  const int64_t rows = 12;
  for (const int64_t dim : {int64_t{1}, int64_t{5}, int64_t{33}}) {
    INFO("dim " << dim);
    const std::vector<uint64_t> touched = {1, 3, 4, 10};  // row 0 is not touched
    auto table = test::random_vector<T>(rows * dim, 70 + dim);
    auto accum = test::random_vector<T>(rows, 71 + dim, 0.0, 0.5);
    const auto table0 = table, accum0 = accum;
    auto ref_table = as_double(table), ref_acc = as_double(accum);
    for (int step = 0; step < 3; ++step) {
      const auto g = sparse_grad<T>(touched, 6, dim, 72 + step);
      kernels::sparse_adagrad_update<T>(ctx, h, grad_scale, dim, &g.num_unique, g.max_unique,
                                        g.ids.data(), g.rows.data(), table.data(), rows,
                                        accum.data());
      for (size_t u = 0; u < touched.size(); ++u) {
        const int64_t r = static_cast<int64_t>(touched[u]);
        double mean_sq = 0;
        for (int64_t d = 0; d < dim; ++d) {
          const double gd = double(grad_scale) * g.rows[u * dim + d];
          mean_sq += gd * gd / double(dim);
        }
        ref_acc[r] += mean_sq;
        for (int64_t d = 0; d < dim; ++d) {
          const double gd = double(grad_scale) * g.rows[u * dim + d];
          ref_table[r * dim + d] -= double(h.lr) * gd / (std::sqrt(ref_acc[r]) + double(h.eps));
        }
      }
    }
    test::require_close(table, ref_table, tolerance<T>(), tolerance<T>(), "table");
    test::require_close(accum, ref_acc, tolerance<T>(), tolerance<T>(), "accum");
    require_untouched_rows_unchanged(table0, table, rows, dim, touched, "table");
    require_untouched_rows_unchanged(accum0, accum, rows, 1, touched, "accum");
    CHECK(table != table0);
  }
}

TEMPLATE_TEST_CASE("sparse_adam_update applies Adam to the listed rows only",
                   "[kernels][optimizer]", float, double) {
  using T = TestType;
  Context ctx;
  AdamHyper h;
  h.lr = 0.02f;
  h.weight_decay = 0.01f;
  const T grad_scale = T(0.25);
  const int64_t rows = 9, dim = 3;
  const std::vector<uint64_t> touched = {0, 2, 7, 8};
  auto table = test::random_vector<T>(rows * dim, 80);
  auto m = test::random_vector<T>(rows * dim, 81, -0.1, 0.1);
  auto v = test::random_vector<T>(rows * dim, 82, 0.0, 0.1);
  const auto table0 = table, m0 = m, v0 = v;
  auto ref_table = as_double(table), ref_m = as_double(m), ref_v = as_double(v);
  for (const int64_t step : {1, 2, 3, 50}) {
    const auto g = sparse_grad<T>(touched, 7, dim, 83 + step);
    kernels::sparse_adam_update<T>(ctx, h, step, grad_scale, dim, &g.num_unique, g.max_unique,
                                   g.ids.data(), g.rows.data(), table.data(), rows, m.data(),
                                   v.data());
    for (size_t u = 0; u < touched.size(); ++u)
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t at = static_cast<int64_t>(touched[u]) * dim + d;
        ref_adam(h, step, double(grad_scale), g.rows[u * dim + d], ref_table[at], ref_m[at],
                 ref_v[at]);
      }
  }
  test::require_close(table, ref_table, tolerance<T>(), tolerance<T>(), "table");
  test::require_close(m, ref_m, tolerance<T>(), tolerance<T>(), "m");
  test::require_close(v, ref_v, tolerance<T>(), tolerance<T>(), "v");
  for (const auto& [before, after, what] :
       {std::tuple{&table0, &table, "table"}, std::tuple{&m0, &m, "m"}, std::tuple{&v0, &v, "v"}})
    require_untouched_rows_unchanged(*before, *after, rows, dim, touched, what);
}

TEMPLATE_TEST_CASE("sparse_adam_update over every row equals adam_update", "[kernels][optimizer]",
                   float, double) {
  using T = TestType;
  Context ctx;
  AdamHyper h;
  h.lr = 0.05f;
  h.weight_decay = 0.02f;
  const int64_t rows = 6, dim = 4, n = rows * dim;
  std::vector<uint64_t> all_rows(rows);
  std::iota(all_rows.begin(), all_rows.end(), uint64_t{0});
  auto dense_p = test::random_vector<T>(n, 90);
  std::vector<T> dense_m(n, T(0)), dense_v(n, T(0));
  auto sparse_p = dense_p, sparse_m = dense_m, sparse_v = dense_v;
  const int64_t num_unique = rows;
  for (int64_t step = 1; step <= 3; ++step) {
    const auto grad = test::random_vector<T>(n, 91 + step);
    kernels::adam_update<T>(ctx, h, step, T(0.5), n, dense_p.data(), grad.data(), dense_m.data(),
                            dense_v.data());
    kernels::sparse_adam_update<T>(ctx, h, step, T(0.5), dim, &num_unique, rows, all_rows.data(),
                                   grad.data(), sparse_p.data(), rows, sparse_m.data(),
                                   sparse_v.data());
  }
  test::require_bitwise_equal(sparse_p, dense_p, "param");
  test::require_bitwise_equal(sparse_m, dense_m, "m");
  test::require_bitwise_equal(sparse_v, dense_v, "v");
  CHECK(test::any_nonzero(dense_m));
}

TEST_CASE("optimizers reject bad steps, counts and buffers", "[kernels][optimizer]") {
  Context ctx;
  std::vector<float> p(8, 1.0f), g(8, 1.0f), m(8, 0.0f), v(8, 0.0f);
  std::vector<uint64_t> ids = {0, 1};
  CHECK_THROWS_WITH(kernels::adam_update<float>(ctx, AdamHyper{}, 0, 1.0f, 8, p.data(), g.data(),
                                                m.data(), v.data()),
                    Contains("step = 0"));
  int64_t num_unique = 3;
  CHECK_THROWS_WITH(
      kernels::sparse_adam_update<float>(ctx, AdamHyper{}, 1, 1.0f, 4, &num_unique, 2, ids.data(),
                                         g.data(), p.data(), 2, m.data(), v.data()),
      Contains("num_unique = 3") && Contains("max_unique = 2"));
  CHECK_THROWS_WITH(
      kernels::sparse_adagrad_update<float>(ctx, AdagradHyper{}, 1.0f, 4, &num_unique, 2,
                                            ids.data(), g.data(), p.data(), 2, m.data()),
      Contains("num_unique = 3"));
  SgdHyper h;
  h.momentum = 0.9f;
  CHECK_THROWS_WITH(kernels::sgd_update<float>(ctx, h, 1.0f, 8, p.data(), g.data(), nullptr),
                    Contains("velocity"));
  // No rows: nothing changes.
  num_unique = 0;
  const auto p0 = p, m0 = m;
  kernels::sparse_adagrad_update<float>(ctx, AdagradHyper{}, 1.0f, 4, &num_unique, 2, ids.data(),
                                        g.data(), p.data(), 2, m.data());
  CHECK(p == p0);
  CHECK(m == m0);
}

TEST_CASE("sparse optimizers reject unique ids past the table before writing anything",
          "[kernels][optimizer]") {
  // Row 0 is listed first and valid: it must not be updated either, since the check of every
  // id comes before the first write (the CUDA kernels report the same message).
  Context ctx;
  const int64_t rows = 2, dim = 4;
  std::vector<float> p(rows * dim, 1.0f), g(rows * dim, 1.0f), m(rows * dim, 0.5f),
      v(rows * dim, 0.5f);
  const auto p0 = p, m0 = m, v0 = v;
  const std::vector<uint64_t> ids = {0, 2};
  const int64_t num_unique = 2;
  const std::string adagrad_message =
      "sparse_adagrad_update: unique_ids[1] = 2 is out of range for a table of 2 rows";
  CHECK_THROWS_WITH(
      kernels::sparse_adagrad_update<float>(ctx, AdagradHyper{}, 1.0f, dim, &num_unique, 2,
                                            ids.data(), g.data(), p.data(), rows, m.data()),
      adagrad_message);
  CHECK_THROWS_WITH(
      kernels::sparse_adam_update<float>(ctx, AdamHyper{}, 1, 1.0f, dim, &num_unique, 2, ids.data(),
                                         g.data(), p.data(), rows, m.data(), v.data()),
      "sparse_adam_update: unique_ids[1] = 2 is out of range for a table of 2 rows");
  CHECK(p == p0);
  CHECK(m == m0);
  CHECK(v == v0);
  // The shared message function gives exactly the thrown text.
  CHECK(kernels::unique_id_out_of_range_message("sparse_adagrad_update", 1, 2, rows) ==
        adagrad_message);
  // With the bad id gone the same call updates row 0.
  const int64_t one = 1;
  kernels::sparse_adagrad_update<float>(ctx, AdagradHyper{}, 1.0f, dim, &one, 2, ids.data(),
                                        g.data(), p.data(), rows, m.data());
  CHECK(p != p0);
}

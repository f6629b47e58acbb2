// CPU reference of the pooled embedding lookup: forward against a naive loop, backward against
// central finite differences in double, the summation-order contract, and input validation.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "csr_batch.h"
#include "kernels/embedding.h"
#include "kernels/feasign.h"
#include "lockstep/core/error.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
using kernels::Pooling;
using test::csr_from_bags;
using test::CsrBatch;
using test::random_csr;

namespace {

// The pooled output straight from the definition, accumulated in long double.
template <class T>
std::vector<long double> naive_forward(Pooling pooling, const CsrBatch& csr, int64_t dim,
                                       const std::vector<T>& table) {
  std::vector<long double> out(static_cast<size_t>(csr.batch() * dim), 0.0L);
  for (int64_t b = 0; b < csr.batch(); ++b) {
    const int64_t len = csr.offsets[b + 1] - csr.offsets[b];
    for (int64_t j = csr.offsets[b]; j < csr.offsets[b + 1]; ++j)
      for (int64_t d = 0; d < dim; ++d) out[b * dim + d] += table[csr.ids[j] * dim + d];
    if (pooling == Pooling::Mean && len > 0)
      for (int64_t d = 0; d < dim; ++d) out[b * dim + d] /= len;
  }
  return out;
}

const char* pooling_name(Pooling p) { return p == Pooling::Sum ? "sum" : "mean"; }

}  // namespace

TEMPLATE_TEST_CASE("pooled_lookup_forward matches a naive loop and writes only its slice",
                   "[kernels][embedding]", float, double) {
  using T = TestType;
  Context ctx;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  const T sentinel = T(-777.25);
  struct Case {
    int64_t batch, dim, rows;
    int max_len;
  };
  uint64_t seed = 100;
  for (const Case s : {Case{1, 1, 5, 4}, Case{1, 16, 3, 6}, Case{7, 3, 50, 5},
                       Case{33, 16, 1000, 12}, Case{20, 33, 9, 8}}) {
    for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
      ++seed;
      INFO("batch " << s.batch << " dim " << s.dim << " rows " << s.rows << " pooling "
                    << pooling_name(pooling));
      const CsrBatch csr = random_csr(s.batch, s.rows, s.max_len, seed);
      const auto table = test::random_vector<T>(s.rows * s.dim, seed + 1000);
      const int64_t ld_out = s.dim + 3;
      std::vector<T> out(static_cast<size_t>(s.batch * ld_out), sentinel);
      kernels::pooled_lookup_forward<T>(ctx, pooling, s.batch, s.dim, table.data(), s.rows,
                                        csr.offsets.data(), csr.ids.data(), out.data(), ld_out);

      const auto ref = naive_forward(pooling, csr, s.dim, table);
      std::vector<T> got(ref.size());
      for (int64_t b = 0; b < s.batch; ++b) {
        for (int64_t d = 0; d < s.dim; ++d) got[b * s.dim + d] = out[b * ld_out + d];
        for (int64_t d = s.dim; d < ld_out; ++d) REQUIRE(out[b * ld_out + d] == sentinel);
        if (csr.offsets[b + 1] == csr.offsets[b])  // empty bag: an exact zero row
          for (int64_t d = 0; d < s.dim; ++d) REQUIRE(out[b * ld_out + d] == T(0));
      }
      test::require_close(got, ref, tol, tol, "pooled output");
      CHECK(test::any_nonzero(got));
    }
  }
}

TEST_CASE("pooled_lookup_forward pools a bag with a repeated id", "[kernels][embedding]") {
  Context ctx;
  const int64_t dim = 4, rows = 6;
  const auto table = test::random_vector<double>(rows * dim, 7);
  const CsrBatch csr = csr_from_bags({{4, 1, 4, 4}});
  std::vector<double> sum(dim), mean(dim);
  kernels::pooled_lookup_forward<double>(ctx, Pooling::Sum, 1, dim, table.data(), rows,
                                         csr.offsets.data(), csr.ids.data(), sum.data(), dim);
  kernels::pooled_lookup_forward<double>(ctx, Pooling::Mean, 1, dim, table.data(), rows,
                                         csr.offsets.data(), csr.ids.data(), mean.data(), dim);
  for (int64_t d = 0; d < dim; ++d) {
    CHECK(sum[d] == Approx(3 * table[4 * dim + d] + table[1 * dim + d]).epsilon(1e-14));
    CHECK(mean[d] == Approx((3 * table[4 * dim + d] + table[1 * dim + d]) / 4).epsilon(1e-14));
  }
}

namespace {

// loss(table) = sum_{b,d} w[b, d] * out[b, d], w stored with row stride ld_w.
double weighted_loss(const Context& ctx, Pooling pooling, const CsrBatch& csr, int64_t dim,
                     const std::vector<double>& table, int64_t rows, const std::vector<double>& w,
                     int64_t ld_w) {
  std::vector<double> out(static_cast<size_t>(csr.batch() * dim));
  kernels::pooled_lookup_forward<double>(ctx, pooling, csr.batch(), dim, table.data(), rows,
                                         csr.offsets.data(), csr.ids.data(), out.data(), dim);
  double loss = 0;
  for (int64_t b = 0; b < csr.batch(); ++b)
    for (int64_t d = 0; d < dim; ++d) loss += w[b * ld_w + d] * out[b * dim + d];
  return loss;
}

void check_backward_by_finite_differences(const CsrBatch& csr, int64_t dim, int64_t rows,
                                          uint64_t seed) {
  Context ctx;
  const std::set<uint64_t> distinct(csr.ids.begin(), csr.ids.end());
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
    INFO("pooling " << pooling_name(pooling) << ", batch " << csr.batch() << ", dim " << dim);
    auto table = test::random_vector<double>(rows * dim, seed);
    const int64_t ld_w = dim + 2;  // dout has padding columns the backward must ignore
    const auto w = test::random_vector<double>(csr.batch() * ld_w, seed + 1);

    const int64_t nnz = csr.nnz();
    std::vector<uint64_t> unique_ids(static_cast<size_t>(nnz));
    std::vector<double> grad_rows(static_cast<size_t>(nnz * dim));
    int64_t num_unique = -1;
    kernels::pooled_lookup_backward<double>(ctx, pooling, csr.batch(), dim, csr.offsets.data(),
                                            csr.ids.data(), nnz, w.data(), ld_w, unique_ids.data(),
                                            grad_rows.data(), &num_unique);

    REQUIRE(num_unique == static_cast<int64_t>(distinct.size()));
    const std::vector<uint64_t> got_ids(unique_ids.begin(), unique_ids.begin() + num_unique);
    REQUIRE(got_ids == std::vector<uint64_t>(distinct.begin(), distinct.end()));  // ascending

    // Central differences for every table entry; rows the batch does not touch must have none.
    const double h = 1e-5;
    for (int64_t r = 0; r < rows; ++r) {
      const auto it = std::find(got_ids.begin(), got_ids.end(), static_cast<uint64_t>(r));
      for (int64_t d = 0; d < dim; ++d) {
        double& x = table[r * dim + d];
        const double saved = x;
        x = saved + h;
        const double plus = weighted_loss(ctx, pooling, csr, dim, table, rows, w, ld_w);
        x = saved - h;
        const double minus = weighted_loss(ctx, pooling, csr, dim, table, rows, w, ld_w);
        x = saved;
        const double numeric = (plus - minus) / (2 * h);
        INFO("row " << r << " dim " << d);
        if (it == got_ids.end()) {
          REQUIRE(std::abs(numeric) < 1e-9);
        } else {
          const double analytic = grad_rows[(it - got_ids.begin()) * dim + d];
          REQUIRE(std::abs(analytic - numeric) <= 1e-8 + 1e-7 * std::abs(numeric));
          REQUIRE(analytic != 0.0);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("pooled_lookup_backward matches central finite differences in double",
          "[kernels][embedding]") {
  SECTION("duplicates within one bag and across bags, an empty bag") {
    const CsrBatch csr = csr_from_bags({{2, 5, 2}, {}, {5}, {0, 2, 2, 6}, {3}, {5, 5}});
    check_backward_by_finite_differences(csr, 3, 8, 11);  // row 1, 4 and 7 untouched
  }
  SECTION("batch 1") { check_backward_by_finite_differences(csr_from_bags({{1, 0, 1}}), 2, 3, 12); }
  SECTION("random batch with many duplicates") {
    check_backward_by_finite_differences(random_csr(9, 11, 6, 13), 4, 11, 14);
  }
}

TEST_CASE("pooled_lookup_backward in float agrees with double", "[kernels][embedding]") {
  Context ctx;
  const CsrBatch csr = random_csr(40, 25, 10, 21);
  const int64_t dim = 7, nnz = csr.nnz();
  const auto dout = test::random_vector<double>(csr.batch() * dim, 22);
  const std::vector<float> dout_f(dout.begin(), dout.end());
  for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
    std::vector<uint64_t> ids_d(nnz), ids_f(nnz);
    std::vector<double> grad_d(nnz * dim);
    std::vector<float> grad_f(nnz * dim);
    int64_t u_d = -1, u_f = -1;
    kernels::pooled_lookup_backward<double>(ctx, pooling, csr.batch(), dim, csr.offsets.data(),
                                            csr.ids.data(), nnz, dout.data(), dim, ids_d.data(),
                                            grad_d.data(), &u_d);
    kernels::pooled_lookup_backward<float>(ctx, pooling, csr.batch(), dim, csr.offsets.data(),
                                           csr.ids.data(), nnz, dout_f.data(), dim, ids_f.data(),
                                           grad_f.data(), &u_f);
    REQUIRE(u_f == u_d);
    REQUIRE(u_d > 1);
    CHECK(std::vector<uint64_t>(ids_f.begin(), ids_f.begin() + u_f) ==
          std::vector<uint64_t>(ids_d.begin(), ids_d.begin() + u_d));
    test::require_close(std::vector<float>(grad_f.begin(), grad_f.begin() + u_f * dim),
                        std::vector<double>(grad_d.begin(), grad_d.begin() + u_d * dim), 1e-6, 1e-5,
                        pooling_name(pooling));
  }
}

TEST_CASE("pooled_lookup_backward sums an id's positions in increasing position order",
          "[kernels][embedding]") {
  // Id 5 sits at positions 0, 2 and 4, in bags with dout 1, 1e8 and -1e8. In float,
  // (1 + 1e8) - 1e8 == 0 because 1e8 + 1 rounds to 1e8, while any order that adds 1 last
  // (e.g. decreasing positions) gives 1: the contract's order is observable.
  Context ctx;
  const CsrBatch csr = csr_from_bags({{5, 2}, {5, 9}, {5}});
  const std::vector<float> dout = {1.0f, 1e8f, -1e8f};
  std::vector<uint64_t> unique_ids(5);
  std::vector<float> grad(5);
  int64_t num_unique = -1;
  kernels::pooled_lookup_backward<float>(ctx, Pooling::Sum, 3, 1, csr.offsets.data(),
                                         csr.ids.data(), 5, dout.data(), 1, unique_ids.data(),
                                         grad.data(), &num_unique);
  REQUIRE(num_unique == 3);
  CHECK(unique_ids[0] == 2);
  CHECK(unique_ids[1] == 5);
  CHECK(unique_ids[2] == 9);
  CHECK(grad[0] == 1.0f);
  CHECK(grad[1] == 0.0f);
  CHECK(grad[2] == 1e8f);
}

TEST_CASE("pooled_lookup_backward sums a hot id by chunks, lanes and the butterfly",
          "[kernels][embedding]") {
  // Bags of one id each: id 7 at n positions (n around the chunk and lane boundaries), id 3 at 5
  // positions in between. The header's order, written out here from its description.
  Context ctx;
  const auto spec_sum = [](const std::vector<float>& v) {
    const auto chunk = [&](size_t from, size_t to) {
      float s = 0.0f;
      for (size_t k = from; k < to; ++k) s += v[k];
      return s;
    };
    if (v.size() <= static_cast<size_t>(kernels::kHotChunk)) return chunk(0, v.size());
    float lanes[32] = {};
    for (size_t from = 0, j = 0; from < v.size(); from += kernels::kHotChunk, ++j)
      lanes[j % 32] += chunk(from, std::min(v.size(), from + kernels::kHotChunk));
    for (int o = 16; o > 0; o /= 2) {
      float next[32];
      for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ o];
      std::copy_n(next, 32, lanes);
    }
    return lanes[0];
  };
  for (const int64_t n : {1, 32, 33, 64, 65, 1024, 1025, 1057, 40000}) {
    DYNAMIC_SECTION("n " << n) {
      std::vector<std::vector<uint64_t>> bags;
      for (int64_t j = 0; j < n; ++j) {
        bags.push_back({7});
        if (j % (n / 5 + 1) == 0) bags.push_back({3});
      }
      const CsrBatch csr = csr_from_bags(bags);
      const int64_t batch = csr.batch(), nnz = csr.nnz();
      // Magnitudes spread over 1e-3 .. 1e5: the order shows in the float result.
      auto dout = test::random_vector<float>(static_cast<size_t>(batch), 31 + n, -1.0, 1.0);
      for (int64_t b = 0; b < batch; ++b) dout[b] *= std::pow(10.0f, float(b % 9) - 3.0f);
      std::vector<uint64_t> unique_ids(nnz);
      std::vector<float> grad(nnz);
      int64_t num_unique = -1;
      kernels::pooled_lookup_backward<float>(ctx, Pooling::Sum, batch, 1, csr.offsets.data(),
                                             csr.ids.data(), nnz, dout.data(), 1, unique_ids.data(),
                                             grad.data(), &num_unique);
      REQUIRE(num_unique == 2);
      std::vector<float> of3, of7;
      long double exact7 = 0;
      for (int64_t b = 0; b < batch; ++b) {
        (csr.ids[b] == 3 ? of3 : of7).push_back(dout[b]);
        if (csr.ids[b] == 7) exact7 += dout[b];
      }
      CHECK(grad[0] == spec_sum(of3));
      CHECK(grad[1] == spec_sum(of7));
      CHECK(static_cast<double>(grad[1]) ==
            Approx(static_cast<double>(exact7)).margin(1e-6 * 1e5 * std::sqrt(double(n))));
      if (n <= kernels::kHotChunk) {  // not hot: the plain sequential sum
        float plain = 0.0f;
        for (float v : of7) plain += v;
        CHECK(grad[1] == plain);
      }
    }
  }
}

TEST_CASE("keyed_lookup_backward over unique_keys' grouping gives pooled_lookup_backward's bits",
          "[kernels][embedding]") {
  // Keys far apart (a dynamic table's), Mean pooling for the gradient columns (the side columns
  // are Sum-pooled all the same), a key hot enough for chunks and lanes (100 positions), an
  // empty bag, and padding past the bags.
  std::vector<std::vector<uint64_t>> bags;
  const uint64_t hot = ~uint64_t{0};
  for (int b = 0; b < 60; ++b) bags.push_back({uint64_t(b % 7) << 40, hot, uint64_t(b % 3) * 977});
  bags.push_back({});
  bags.push_back(std::vector<uint64_t>(40, hot));
  const CsrBatch csr = csr_from_bags(bags);
  const int64_t batch = csr.batch(), nnz = csr.nnz(), dim = 5, staged = nnz + 6, side_width = 3;
  const auto n = static_cast<size_t>(staged);
  std::vector<uint64_t> ids = csr.ids, keys(n);
  ids.resize(n, static_cast<uint64_t>(staged));  // padding: the staged count
  std::vector<int> order(n, -7);
  std::vector<int64_t> starts(n + 1, -7);
  int64_t num_keys = -1;
  kernels::unique_keys<float>(Context{}, nnz, staged, ids.data(), keys.data(), &num_keys,
                              order.data(), starts.data());
  REQUIRE(num_keys == 10);  // 0, 977, 1954, 1 << 40 .. 6 << 40, and the hot key (the last)
  const auto dout = test::random_vector<float>(static_cast<size_t>(batch * dim), 3);
  const auto side = test::random_vector<float>(static_cast<size_t>(batch * side_width), 4);
  const int64_t ld = side_width + dim + 2;  // a record wider than its columns
  std::vector<float> rows(n * ld, 42.0f);
  kernels::keyed_lookup_backward<float>(Context{}, Pooling::Mean, batch, dim, csr.offsets.data(),
                                        staged, true, order.data(), starts.data(), &num_keys,
                                        dout.data(), dim, side_width, side.data(), rows.data(), ld);
  const auto column = [&](int64_t c) {
    std::vector<float> v;
    for (int64_t u = 0; u < num_keys; ++u) v.push_back(rows[u * ld + c]);
    return v;
  };
  // The same positions' backward through the sort: the same bits, column by column.
  std::vector<uint64_t> unique(n);
  std::vector<float> alone(n * dim);
  int64_t u_alone = -1;
  const int bits = kernels::id_bits_for(staged + 1);
  kernels::pooled_lookup_backward<float>(Context{}, Pooling::Mean, batch, dim, csr.offsets.data(),
                                         ids.data(), staged, dout.data(), dim, unique.data(),
                                         alone.data(), &u_alone, bits, true);
  REQUIRE(u_alone == num_keys);
  for (int64_t d = 0; d < dim; ++d) {
    std::vector<float> expect;
    for (int64_t u = 0; u < num_keys; ++u) expect.push_back(alone[u * dim + d]);
    CHECK(column(side_width + d) == expect);
  }
  for (int64_t c = 0; c < side_width; ++c) {
    std::vector<float> side_c, expect(n);
    for (int64_t b = 0; b < batch; ++b) side_c.push_back(side[b * side_width + c]);
    kernels::pooled_lookup_backward<float>(Context{}, Pooling::Sum, batch, 1, csr.offsets.data(),
                                           ids.data(), staged, side_c.data(), 1, unique.data(),
                                           expect.data(), &u_alone, bits, true);
    expect.resize(static_cast<size_t>(num_keys));
    CHECK(column(c) == expect);
  }
  CHECK(rows[side_width + dim] == 42.0f);  // past the columns: untouched
  CHECK(rows[num_keys * ld] == 42.0f);     // past the keys: untouched
  // The hot key's side column 0 in the contract's order: 100 positions, chunks of 32 to lanes,
  // butterfly.
  std::vector<float> hot_terms;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = csr.offsets[b]; j < csr.offsets[b + 1]; ++j)
      if (csr.ids[j] == hot) hot_terms.push_back(side[b * side_width]);
  REQUIRE(hot_terms.size() == 100);
  float lanes[kernels::kHotLanes] = {};
  for (size_t from = 0, c = 0; from < hot_terms.size(); from += kernels::kHotChunk, ++c) {
    float chunk = 0.0f;
    for (size_t k = from; k < std::min(hot_terms.size(), from + kernels::kHotChunk); ++k)
      chunk += hot_terms[k];
    lanes[c % kernels::kHotLanes] += chunk;
  }
  for (int o = kernels::kHotLanes / 2; o > 0; o /= 2) {
    float next[kernels::kHotLanes];
    for (int l = 0; l < kernels::kHotLanes; ++l) next[l] = lanes[l] + lanes[l ^ o];
    std::copy_n(next, kernels::kHotLanes, lanes);
  }
  CHECK(rows[9 * ld] == lanes[0]);

  // A grouping unique_keys does not make: named, and nothing written.
  const auto run = [&](const std::vector<int>& o, const std::vector<int64_t>& st, int64_t k) {
    std::fill(rows.begin(), rows.end(), 42.0f);
    kernels::keyed_lookup_backward<float>(Context{}, Pooling::Sum, batch, dim, csr.offsets.data(),
                                          staged, true, o.data(), st.data(), &k, dout.data(), dim,
                                          side_width, side.data(), rows.data(), ld);
  };
  auto bad_order = order;
  bad_order[17] = static_cast<int>(nnz);
  CHECK_THROWS_WITH(run(bad_order, starts, num_keys),
                    Contains("keyed_lookup_backward: order[17] = " + std::to_string(nnz)));
  CHECK(std::all_of(rows.begin(), rows.end(), [](float v) { return v == 42.0f; }));
  auto bad_starts = starts;
  bad_starts[3] = bad_starts[2] - 1;
  CHECK_THROWS_WITH(run(order, bad_starts, num_keys), Contains("starts[3]"));
  CHECK_THROWS_WITH(run(order, starts, num_keys - 1), Contains("starts[9]"));
  CHECK_THROWS_WITH(run(order, starts, nnz + 1),
                    Contains("num_unique = " + std::to_string(nnz + 1)));
  CHECK_THROWS_WITH(kernels::keyed_lookup_backward<float>(
                        Context{}, Pooling::Sum, batch, dim, csr.offsets.data(), staged, true,
                        order.data(), starts.data(), &num_keys, dout.data(), dim, side_width,
                        side.data(), rows.data(), side_width + dim - 1),
                    Contains("ld_rows"));
}

TEST_CASE("id_bits_for gives the bits of the largest id; a bad id_bits is rejected",
          "[kernels][embedding]") {
  CHECK(kernels::id_bits_for(0) == 1);
  CHECK(kernels::id_bits_for(1) == 1);
  CHECK(kernels::id_bits_for(2) == 1);
  CHECK(kernels::id_bits_for(3) == 2);
  CHECK(kernels::id_bits_for(1 << 20) == 20);
  CHECK(kernels::id_bits_for((1 << 20) + 1) == 21);
  CHECK(kernels::id_bits_for(1000000) == 20);
  CHECK(kernels::id_bits_for(INT64_MAX) == 63);
  Context ctx;
  const CsrBatch csr = csr_from_bags({{1, 2}});
  std::vector<float> dout(1), grad(2);
  std::vector<uint64_t> unique_ids(2);
  int64_t num_unique = 0;
  for (int bad : {0, 65})
    REQUIRE_THROWS_WITH(kernels::pooled_lookup_backward<float>(
                            ctx, Pooling::Sum, 1, 1, csr.offsets.data(), csr.ids.data(), 2,
                            dout.data(), 1, unique_ids.data(), grad.data(), &num_unique, bad),
                        Contains("pooled_lookup_backward: id_bits=" + std::to_string(bad)));
  // Id 2 needs 2 bits: the CPU reference names the id that does not fit.
  REQUIRE_THROWS_WITH(kernels::pooled_lookup_backward<float>(
                          ctx, Pooling::Sum, 1, 1, csr.offsets.data(), csr.ids.data(), 2,
                          dout.data(), 1, unique_ids.data(), grad.data(), &num_unique, 1),
                      Contains("ids[1] = 2 is not below 2^id_bits (id_bits = 1)"));
}

TEST_CASE("pooled_lookup_backward gives the same bits with any id_bits that fits",
          "[kernels][embedding]") {
  // The radix sort over id_bits (1 to 3 passes) and the comparison sort (64 bits) order the
  // positions alike: (id, position). Ids < 2^20, then < 2^33, with duplicates and hot ids.
  Context ctx;
  for (const int bits : {20, 33}) {
    DYNAMIC_SECTION("ids below 2^" << bits) {
      const int64_t rows = int64_t{1} << bits;
      CsrBatch csr = random_csr(700, rows, 60, 71 + bits);
      for (size_t j = 0; j < csr.ids.size(); j += 3) csr.ids[j] = csr.ids[j] % 50;  // repeats
      const int64_t batch = csr.batch(), nnz = csr.nnz(), dim = 5;
      const auto dout = test::random_vector<float>(static_cast<size_t>(batch * dim), 72);
      const auto run = [&](int id_bits) {
        std::vector<uint64_t> unique_ids(nnz);
        std::vector<float> grad(nnz * dim);
        int64_t num_unique = -1;
        kernels::pooled_lookup_backward<float>(
            ctx, Pooling::Mean, batch, dim, csr.offsets.data(), csr.ids.data(), nnz, dout.data(),
            dim, unique_ids.data(), grad.data(), &num_unique, id_bits);
        grad.resize(num_unique * dim);
        for (int64_t u = 0; u < num_unique; ++u) grad.push_back(float(unique_ids[u]));
        return grad;
      };
      const auto all = run(64);
      REQUIRE(test::any_nonzero(all));
      test::require_bitwise_equal(run(kernels::id_bits_for(rows)), all, "id_bits_for(rows)");
      test::require_bitwise_equal(run(bits + 7), all, "more bits");
    }
  }
}

TEST_CASE("pooled_lookup_backward of a batch without ids has no unique ids",
          "[kernels][embedding]") {
  Context ctx;
  std::vector<uint64_t> unique_ids(1, 99);
  std::vector<float> grad(4, 3.0f);
  const std::vector<float> dout(3 * 4, 1.0f);
  int64_t num_unique = -1;
  const CsrBatch empty_bags = csr_from_bags({{}, {}, {}});
  kernels::pooled_lookup_backward<float>(ctx, Pooling::Mean, 3, 4, empty_bags.offsets.data(),
                                         empty_bags.ids.data(), 0, dout.data(), 4,
                                         unique_ids.data(), grad.data(), &num_unique);
  CHECK(num_unique == 0);
  num_unique = -1;
  const int64_t zero_offset = 0;
  kernels::pooled_lookup_backward<float>(ctx, Pooling::Sum, 0, 4, &zero_offset, nullptr, 0,
                                         dout.data(), 4, unique_ids.data(), grad.data(),
                                         &num_unique);
  CHECK(num_unique == 0);
}

TEST_CASE("pooled lookup rejects bad ids and offsets, naming the position",
          "[kernels][embedding]") {
  Context ctx;
  const int64_t dim = 2, rows = 5;
  const auto table = test::random_vector<float>(rows * dim, 3);
  std::vector<float> out(3 * dim, 42.0f);
  std::vector<float> dout(3 * dim, 1.0f), grad(8 * dim);
  std::vector<uint64_t> unique_ids(8);
  int64_t num_unique = 0;

  SECTION("id out of range") {
    const CsrBatch csr = csr_from_bags({{0, 4}, {1, 5}, {2}});  // ids[3] = 5 in sample 1
    CHECK_THROWS_WITH(
        kernels::pooled_lookup_forward<float>(ctx, Pooling::Sum, 3, dim, table.data(), rows,
                                              csr.offsets.data(), csr.ids.data(), out.data(), dim),
        Contains("ids[3] = 5") && Contains("sample 1") && Contains("5 rows"));
    CHECK(out == std::vector<float>(3 * dim, 42.0f));  // validated before anything is written
  }
  SECTION("offsets not starting at 0") {
    const std::vector<int64_t> offsets = {1, 2, 3, 4};
    const std::vector<uint64_t> ids = {0, 1, 2, 3};
    // The forward accepts a window of a larger CSR: bags are ids[1], ids[2], ids[3].
    kernels::pooled_lookup_forward<float>(ctx, Pooling::Mean, 3, dim, table.data(), rows,
                                          offsets.data(), ids.data(), out.data(), dim);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t d = 0; d < dim; ++d) CHECK(out[b * dim + d] == table[(b + 1) * dim + d]);
    const std::vector<int64_t> negative = {-1, 2, 3, 4};
    CHECK_THROWS_WITH(
        kernels::pooled_lookup_forward<float>(ctx, Pooling::Mean, 3, dim, table.data(), rows,
                                              negative.data(), ids.data(), out.data(), dim),
        Contains("offsets[0] = -1"));
    CHECK_THROWS_WITH(kernels::pooled_lookup_backward<float>(
                          ctx, Pooling::Mean, 3, dim, offsets.data(), ids.data(), 4, dout.data(),
                          dim, unique_ids.data(), grad.data(), &num_unique),
                      Contains("offsets[0] = 1"));
  }
  SECTION("decreasing offsets") {
    const std::vector<int64_t> offsets = {0, 3, 2, 4};
    const std::vector<uint64_t> ids = {0, 1, 2, 3};
    CHECK_THROWS_WITH(
        kernels::pooled_lookup_forward<float>(ctx, Pooling::Sum, 3, dim, table.data(), rows,
                                              offsets.data(), ids.data(), out.data(), dim),
        Contains("offsets[2] = 2") && Contains("sample 1"));
    CHECK_THROWS_WITH(kernels::pooled_lookup_backward<float>(
                          ctx, Pooling::Sum, 3, dim, offsets.data(), ids.data(), 4, dout.data(),
                          dim, unique_ids.data(), grad.data(), &num_unique),
                      Contains("offsets[2] = 2") && Contains("sample 1"));
  }
  SECTION("nnz disagrees with the offsets") {
    const CsrBatch csr = csr_from_bags({{0, 4}, {1}, {2}});
    CHECK_THROWS_WITH(kernels::pooled_lookup_backward<float>(
                          ctx, Pooling::Sum, 3, dim, csr.offsets.data(), csr.ids.data(), 5,
                          dout.data(), dim, unique_ids.data(), grad.data(), &num_unique),
                      Contains("nnz=5") && Contains("offsets[3] = 4"));
  }
  SECTION("row stride smaller than dim") {
    const CsrBatch csr = csr_from_bags({{0}, {1}, {2}});
    CHECK_THROWS_WITH(
        kernels::pooled_lookup_forward<float>(ctx, Pooling::Sum, 3, dim, table.data(), rows,
                                              csr.offsets.data(), csr.ids.data(), out.data(), 1),
        Contains("ld_out=1"));
  }
}

// ==== merge_sparse_rows =======================================================================

namespace {

// Random gathered rows: n ids drawn from [0, id_range) (so ids repeat when n > id_range) and
// n rows of dim values.
struct GatheredRows {
  std::vector<uint64_t> ids;
  std::vector<float> rows;
};
GatheredRows random_gathered_rows(int64_t n, int64_t dim, uint64_t id_range, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> id_dist(0, id_range - 1);
  GatheredRows g;
  for (int64_t i = 0; i < n; ++i) g.ids.push_back(id_dist(rng) * 7919);  // sparse, unsorted
  g.rows = test::random_vector<float>(static_cast<size_t>(n * dim), seed + 1, -10.0, 10.0);
  return g;
}

}  // namespace

TEST_CASE("merge_sparse_rows gives the bits of pooled_lookup_backward over one-id bags",
          "[kernels][embedding]") {
  // What the trainer does today: every gathered row is a one-id bag of a Sum-pooled backward.
  Context ctx;
  uint64_t seed = 500;
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{9}, int64_t{300}, int64_t{2000}}) {
    for (const int64_t dim : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{33}}) {
      for (const uint64_t id_range : {uint64_t{4}, uint64_t{100}, uint64_t{100000}}) {
        ++seed;
        INFO("n " << n << " dim " << dim << " id range " << id_range);
        const GatheredRows g = random_gathered_rows(n, dim, id_range, seed);
        std::vector<int64_t> offsets(static_cast<size_t>(n + 1));
        for (int64_t i = 0; i <= n; ++i) offsets[i] = i;
        std::vector<uint64_t> unique_ref(static_cast<size_t>(n)), unique(static_cast<size_t>(n));
        std::vector<float> merged_ref(static_cast<size_t>(n * dim), -1.0f),
            merged(static_cast<size_t>(n * dim), -2.0f);
        int64_t count_ref = -1, count = -1;
        kernels::pooled_lookup_backward<float>(ctx, Pooling::Sum, n, dim, offsets.data(),
                                               g.ids.data(), n, g.rows.data(), dim,
                                               unique_ref.data(), merged_ref.data(), &count_ref);
        kernels::merge_sparse_rows<float>(ctx, n, dim, g.ids.data(), g.rows.data(), unique.data(),
                                          merged.data(), &count);
        REQUIRE(count == count_ref);
        unique.resize(static_cast<size_t>(count));
        unique_ref.resize(static_cast<size_t>(count));
        merged.resize(static_cast<size_t>(count * dim));
        merged_ref.resize(static_cast<size_t>(count * dim));
        REQUIRE(unique == unique_ref);
        REQUIRE(std::is_sorted(unique.begin(), unique.end()));
        test::require_bitwise_equal(merged, merged_ref, "merged rows");
        if (n > static_cast<int64_t>(id_range)) CHECK(count < n);  // ids did repeat
      }
    }
  }
}

TEST_CASE("merge_sparse_rows adds equal ids in increasing row order", "[kernels][embedding]") {
  // Id 5 is in rows 0, 2 and 4 with values 1, 1e8 and -1e8: in float (1 + 1e8) - 1e8 == 0,
  // while adding the 1 last would give 1. Doubles: the merge of a few rows, exactly.
  Context ctx;
  const std::vector<uint64_t> ids = {5, 2, 5, 9, 5};
  const std::vector<float> rows = {1.0f, 3.0f, 1e8f, 4.0f, -1e8f};
  std::vector<uint64_t> unique(5);
  std::vector<float> merged(5);
  int64_t count = -1;
  kernels::merge_sparse_rows<float>(ctx, 5, 1, ids.data(), rows.data(), unique.data(),
                                    merged.data(), &count);
  REQUIRE(count == 3);
  CHECK(unique[0] == 2);
  CHECK(unique[1] == 5);
  CHECK(unique[2] == 9);
  CHECK(merged[0] == 3.0f);
  CHECK(merged[1] == 0.0f);
  CHECK(merged[2] == 4.0f);

  const std::vector<uint64_t> ids2 = {7, 3, 7};
  const std::vector<double> rows2 = {1.0, 2.0, 10.0, 20.0, 100.0, 200.0};  // dim 2
  std::vector<uint64_t> unique2(3);
  std::vector<double> merged2(6);
  kernels::merge_sparse_rows<double>(ctx, 3, 2, ids2.data(), rows2.data(), unique2.data(),
                                     merged2.data(), &count);
  REQUIRE(count == 2);
  CHECK(unique2[0] == 3);
  CHECK(unique2[1] == 7);
  merged2.resize(static_cast<size_t>(count * 2));
  CHECK(merged2 == std::vector<double>{10.0, 20.0, 101.0, 202.0});
}

TEST_CASE("merge_sparse_rows of no rows has no unique ids; bad sizes are rejected",
          "[kernels][embedding]") {
  Context ctx;
  std::vector<uint64_t> unique(1, 99);
  std::vector<float> merged(4, 3.0f);
  int64_t count = -1;
  kernels::merge_sparse_rows<float>(ctx, 0, 4, nullptr, nullptr, unique.data(), merged.data(),
                                    &count);
  CHECK(count == 0);
  CHECK(unique[0] == 99);  // nothing written
  CHECK_THROWS_WITH(kernels::merge_sparse_rows<float>(ctx, -1, 4, nullptr, nullptr, unique.data(),
                                                      merged.data(), &count),
                    Contains("merge_sparse_rows") && Contains("n=-1"));
  CHECK_THROWS_WITH(kernels::merge_sparse_rows<float>(ctx, 1, -4, nullptr, nullptr, unique.data(),
                                                      merged.data(), &count),
                    Contains("dim=-4"));
}

TEMPLATE_TEST_CASE("pooled_lookup_forward over a window of a larger CSR equals the window alone",
                   "[kernels][embedding]", float, double) {
  // A field's bags as a window [first, first + batch) of a CSR of all fields: absolute offsets,
  // offsets[0] > 0. The result must be the bits of the same bags as a standalone CSR.
  using T = TestType;
  Context ctx;
  const int64_t rows = 40, dim = 5, ld_out = dim + 2;
  const CsrBatch all = random_csr(30, rows, 6, 77);
  const auto table = test::random_vector<T>(rows * dim, 78);
  for (const auto& [first, batch] :
       std::vector<std::pair<int64_t, int64_t>>{{2, 10}, {7, 23}, {29, 1}, {12, 0}}) {
    for (const Pooling pooling : {Pooling::Sum, Pooling::Mean}) {
      INFO("window " << first << " + " << batch << " pooling " << pooling_name(pooling));
      const int64_t begin = all.offsets[first];
      REQUIRE((begin > 0 || batch == 0));
      CsrBatch alone;
      for (int64_t b = first; b < first + batch; ++b)
        alone.add_bag(std::vector<uint64_t>(all.ids.begin() + all.offsets[b],
                                            all.ids.begin() + all.offsets[b + 1]));
      std::vector<T> out_window(static_cast<size_t>(batch * ld_out), T(-3)),
          out_alone(static_cast<size_t>(batch * ld_out), T(-3));
      kernels::pooled_lookup_forward<T>(ctx, pooling, batch, dim, table.data(), rows,
                                        all.offsets.data() + first, all.ids.data(),
                                        out_window.data(), ld_out);
      kernels::pooled_lookup_forward<T>(ctx, pooling, batch, dim, table.data(), rows,
                                        alone.offsets.data(), alone.ids.data(), out_alone.data(),
                                        ld_out);
      test::require_bitwise_equal(out_window, out_alone, "window vs alone");
      if (batch > 0) CHECK(test::any_nonzero(out_window));
    }
  }
}

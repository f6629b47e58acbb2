// CUDA vs CPU reference for the kernels of activation.h, bias.h, loss.h and reduce.h, on random
// inputs with fixed seeds, plus run-to-run bitwise determinism of the CUDA reductions.
//
// Tolerances (|got - ref| <= atol + rtol |ref|): elementwise ops rtol 1e-5 (fp32, a few ulps of
// expf/log1pf and FMA contraction apart); outputs that go through a column reduction rtol 1e-4,
// with atol scaled by sqrt(rows) for raw column sums, which are sums of `rows` random-sign terms
// and so of that magnitude.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "kernels/activation.h"
#include "kernels/bias.h"
#include "kernels/loss.h"
#include "kernels/reduce.h"
#include "lockstep/core/error.h"

using namespace lockstep;

namespace {

struct MatrixShape {
  int64_t rows, cols;
};

/// 1x1, odd sizes, sizes that are not multiples of the 8-column tile, one column with many rows,
/// a wide batch, and an empty batch.
const std::vector<MatrixShape> kShapes = {{1, 1},      {3, 7},    {1, 9},     {257, 33},
                                          {1000, 200}, {4096, 1}, {4096, 80}, {0, 5}};

std::string name(const MatrixShape& s) {
  return std::to_string(s.rows) + "x" + std::to_string(s.cols);
}

/// A device tensor of n elements, uninitialised.
Tensor<float> device_tensor(const Context& gpu, int64_t n) { return Tensor<float>(gpu, {n}); }

std::vector<float> host(const Context& gpu, const Tensor<float>& t) { return to_host(gpu, t); }

double sqrt_rows(int64_t rows) {
  return std::sqrt(static_cast<double>(std::max<int64_t>(rows, 1)));
}

constexpr double kElemAtol = 1e-6, kElemRtol = 1e-5;
constexpr double kReduceRtol = 1e-4;

}  // namespace

TEST_CASE("CUDA relu, leaky_relu and sigmoid match the CPU reference", "[gpu][activation]") {
  test::ParityContexts ctx;
  const float slope = 0.15f;
  for (const auto& shape : kShapes) {
    const int64_t n = shape.rows * shape.cols;
    INFO("shape " << name(shape));
    auto x = test::random_vector<float>(n, 1000 + n, -8.0, 8.0);
    // Reach the kink and the saturated sigmoid.
    const std::vector<float> special = {0.f, 40.f, -40.f, 100.f, -100.f};
    for (size_t k = 0; k < special.size() && k < x.size(); ++k) x[k] = special[k];
    const auto dy = test::random_vector<float>(n, 2000 + n);
    const auto x_g = test::to_gpu(ctx.gpu, x), dy_g = test::to_gpu(ctx.gpu, dy);
    const std::vector<float> garbage(n, 1e9f);  // dx overwrites

    auto y_g = device_tensor(ctx.gpu, n);
    auto dx_g = test::to_gpu(ctx.gpu, garbage);
    std::vector<float> y(n), dx(n);

    kernels::relu_forward<float>(ctx.cpu, n, x.data(), y.data());
    kernels::relu_forward<float>(ctx.gpu, n, x_g.data(), y_g.data());
    test::require_close(host(ctx.gpu, y_g), y, kElemAtol, kElemRtol, "relu_forward");
    kernels::relu_backward<float>(ctx.cpu, n, x.data(), dy.data(), dx.data());
    kernels::relu_backward<float>(ctx.gpu, n, x_g.data(), dy_g.data(), dx_g.data());
    test::require_close(host(ctx.gpu, dx_g), dx, kElemAtol, kElemRtol, "relu_backward");

    kernels::leaky_relu_forward<float>(ctx.cpu, n, slope, x.data(), y.data());
    kernels::leaky_relu_forward<float>(ctx.gpu, n, slope, x_g.data(), y_g.data());
    test::require_close(host(ctx.gpu, y_g), y, kElemAtol, kElemRtol, "leaky_relu_forward");
    dx_g = test::to_gpu(ctx.gpu, garbage);
    kernels::leaky_relu_backward<float>(ctx.cpu, n, slope, x.data(), dy.data(), dx.data());
    kernels::leaky_relu_backward<float>(ctx.gpu, n, slope, x_g.data(), dy_g.data(), dx_g.data());
    test::require_close(host(ctx.gpu, dx_g), dx, kElemAtol, kElemRtol, "leaky_relu_backward");

    kernels::sigmoid_forward<float>(ctx.cpu, n, x.data(), y.data());
    kernels::sigmoid_forward<float>(ctx.gpu, n, x_g.data(), y_g.data());
    const auto y_sig = host(ctx.gpu, y_g);
    for (const float v : y_sig) REQUIRE(std::isfinite(v));
    test::require_close(y_sig, y, kElemAtol, kElemRtol, "sigmoid_forward");
    // Backward from the CPU forward output on both sides, so only the backward is compared.
    const auto ysig_g = test::to_gpu(ctx.gpu, y);
    dx_g = test::to_gpu(ctx.gpu, garbage);
    kernels::sigmoid_backward<float>(ctx.cpu, n, y.data(), dy.data(), dx.data());
    kernels::sigmoid_backward<float>(ctx.gpu, n, ysig_g.data(), dy_g.data(), dx_g.data());
    test::require_close(host(ctx.gpu, dx_g), dx, kElemAtol, kElemRtol, "sigmoid_backward");
  }
}

TEST_CASE("CUDA prelu matches the CPU reference and its dalpha is deterministic",
          "[gpu][activation]") {
  test::ParityContexts ctx;
  for (const auto& shape : kShapes) {
    const int64_t rows = shape.rows, cols = shape.cols, n = rows * cols;
    INFO("shape " << name(shape));
    auto x = test::random_vector<float>(n, 3000 + n, -3.0, 3.0);
    if (n > 0) x[0] = 0.f;
    const auto alpha = test::random_vector<float>(cols, 3100 + cols, -0.2, 0.6);
    const auto dy = test::random_vector<float>(n, 3200 + n);
    const auto dalpha0 = test::random_vector<float>(cols, 3300 + cols);  // dalpha accumulates
    const auto x_g = test::to_gpu(ctx.gpu, x), alpha_g = test::to_gpu(ctx.gpu, alpha),
               dy_g = test::to_gpu(ctx.gpu, dy);

    std::vector<float> y(n);
    auto y_g = device_tensor(ctx.gpu, n);
    kernels::prelu_forward<float>(ctx.cpu, rows, cols, x.data(), alpha.data(), y.data());
    kernels::prelu_forward<float>(ctx.gpu, rows, cols, x_g.data(), alpha_g.data(), y_g.data());
    test::require_close(host(ctx.gpu, y_g), y, kElemAtol, kElemRtol, "prelu_forward");

    std::vector<float> dx(n, 1e9f), dalpha = dalpha0;
    kernels::prelu_backward<float>(ctx.cpu, rows, cols, x.data(), alpha.data(), dy.data(),
                                   dx.data(), dalpha.data());
    auto dx_g = test::to_gpu(ctx.gpu, std::vector<float>(n, 1e9f));
    auto dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::prelu_backward<float>(ctx.gpu, rows, cols, x_g.data(), alpha_g.data(), dy_g.data(),
                                   dx_g.data(), dalpha_g.data());
    const auto dx_1 = host(ctx.gpu, dx_g), dalpha_1 = host(ctx.gpu, dalpha_g);
    test::require_close(dx_1, dx, kElemAtol, kElemRtol, "prelu_backward dx");
    test::require_close(dalpha_1, dalpha, 1e-4 * sqrt_rows(rows), kReduceRtol,
                        "prelu_backward dalpha");

    // Same inputs again: identical bits.
    dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::prelu_backward<float>(ctx.gpu, rows, cols, x_g.data(), alpha_g.data(), dy_g.data(),
                                   dx_g.data(), dalpha_g.data());
    test::require_bitwise_equal(host(ctx.gpu, dalpha_g), dalpha_1, "prelu dalpha run to run");

    // dx may alias dy: same result in place.
    auto inplace_g = test::to_gpu(ctx.gpu, dy);
    dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::prelu_backward<float>(ctx.gpu, rows, cols, x_g.data(), alpha_g.data(),
                                   inplace_g.data(), inplace_g.data(), dalpha_g.data());
    test::require_bitwise_equal(host(ctx.gpu, inplace_g), dx_1, "prelu dx in place");
    test::require_bitwise_equal(host(ctx.gpu, dalpha_g), dalpha_1, "prelu dalpha, dx aliasing dy");
  }
}

TEST_CASE("CUDA dice matches the CPU reference and its reductions are deterministic",
          "[gpu][activation][dice]") {
  test::ParityContexts ctx;
  const float eps = 1e-8f, momentum = 0.99f;
  for (const auto& shape : kShapes) {
    const int64_t rows = shape.rows, cols = shape.cols, n = rows * cols;
    INFO("shape " << name(shape));
    // Columns with different offsets and scales, so normalisation matters.
    auto x = test::random_vector<float>(n, 4000 + n, -2.0, 2.0);
    const auto offset = test::random_vector<float>(cols, 4050 + cols, -3.0, 3.0);
    for (int64_t i = 0; i < n; ++i)
      x[i] = x[i] * static_cast<float>(1 + i % cols % 4) + offset[i % cols];
    const auto alpha = test::random_vector<float>(cols, 4100 + cols, -0.3, 0.8);
    const auto dy = test::random_vector<float>(n, 4200 + n);
    const auto dalpha0 = test::random_vector<float>(cols, 4300 + cols);
    const auto rmean0 = test::random_vector<float>(cols, 4400 + cols, -1.0, 1.0);
    const auto rvar0 = test::random_vector<float>(cols, 4500 + cols, 0.5, 2.0);
    const auto x_g = test::to_gpu(ctx.gpu, x), alpha_g = test::to_gpu(ctx.gpu, alpha),
               dy_g = test::to_gpu(ctx.gpu, dy);

    // Training forward.
    std::vector<float> y(n), mean(cols), var(cols), p(n);
    kernels::dice_forward_train<float>(ctx.cpu, rows, cols, eps, x.data(), alpha.data(), y.data(),
                                       mean.data(), var.data(), p.data());
    auto y_g = device_tensor(ctx.gpu, n), p_g = device_tensor(ctx.gpu, n);
    auto mean_g = device_tensor(ctx.gpu, cols), var_g = device_tensor(ctx.gpu, cols);
    kernels::dice_forward_train<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                       y_g.data(), mean_g.data(), var_g.data(), p_g.data());
    if (rows > 0) {
      test::require_close(host(ctx.gpu, mean_g), mean, 1e-5, kReduceRtol, "dice mean");
      test::require_close(host(ctx.gpu, var_g), var, 1e-5, kReduceRtol, "dice var");
      test::require_close(host(ctx.gpu, p_g), p, 1e-5, kReduceRtol, "dice p");
      test::require_close(host(ctx.gpu, y_g), y, 1e-5, kReduceRtol, "dice y (train)");
    }
    const auto mean_1 = host(ctx.gpu, mean_g), var_1 = host(ctx.gpu, var_g),
               p_1 = host(ctx.gpu, p_g), y_1 = host(ctx.gpu, y_g);
    kernels::dice_forward_train<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                       y_g.data(), mean_g.data(), var_g.data(), p_g.data());
    if (rows > 0) {
      test::require_bitwise_equal(host(ctx.gpu, mean_g), mean_1, "dice mean run to run");
      test::require_bitwise_equal(host(ctx.gpu, var_g), var_1, "dice var run to run");
      test::require_bitwise_equal(host(ctx.gpu, y_g), y_1, "dice y run to run");
    }

    // Backward, from the CPU's saved statistics on both sides so that only the backward is
    // compared.
    const auto mean_c = test::to_gpu(ctx.gpu, mean), var_c = test::to_gpu(ctx.gpu, var),
               p_c = test::to_gpu(ctx.gpu, p);
    std::vector<float> dx(n, 1e9f), dalpha = dalpha0;
    kernels::dice_backward<float>(ctx.cpu, rows, cols, eps, x.data(), alpha.data(), mean.data(),
                                  var.data(), p.data(), dy.data(), dx.data(), dalpha.data());
    auto dx_g = test::to_gpu(ctx.gpu, std::vector<float>(n, 1e9f));
    auto dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::dice_backward<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                  mean_c.data(), var_c.data(), p_c.data(), dy_g.data(), dx_g.data(),
                                  dalpha_g.data());
    const auto dx_1 = host(ctx.gpu, dx_g), dalpha_1 = host(ctx.gpu, dalpha_g);
    test::require_close(dx_1, dx, 1e-5, kReduceRtol, "dice dx");
    test::require_close(dalpha_1, dalpha, 1e-4 * sqrt_rows(rows), kReduceRtol, "dice dalpha");

    dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::dice_backward<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                  mean_c.data(), var_c.data(), p_c.data(), dy_g.data(), dx_g.data(),
                                  dalpha_g.data());
    test::require_bitwise_equal(host(ctx.gpu, dx_g), dx_1, "dice dx run to run");
    test::require_bitwise_equal(host(ctx.gpu, dalpha_g), dalpha_1, "dice dalpha run to run");

    auto inplace_g = test::to_gpu(ctx.gpu, dy);
    dalpha_g = test::to_gpu(ctx.gpu, dalpha0);
    kernels::dice_backward<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                  mean_c.data(), var_c.data(), p_c.data(), inplace_g.data(),
                                  inplace_g.data(), dalpha_g.data());
    test::require_bitwise_equal(host(ctx.gpu, inplace_g), dx_1, "dice dx in place");
    test::require_bitwise_equal(host(ctx.gpu, dalpha_g), dalpha_1, "dice dalpha, dx aliasing dy");

    // Running averages (from the CPU statistics) and inference with them.
    std::vector<float> rmean = rmean0, rvar = rvar0;
    kernels::dice_update_running<float>(ctx.cpu, rows, cols, momentum, mean.data(), var.data(),
                                        rmean.data(), rvar.data());
    auto rmean_g = test::to_gpu(ctx.gpu, rmean0), rvar_g = test::to_gpu(ctx.gpu, rvar0);
    kernels::dice_update_running<float>(ctx.gpu, rows, cols, momentum, mean_c.data(), var_c.data(),
                                        rmean_g.data(), rvar_g.data());
    test::require_close(host(ctx.gpu, rmean_g), rmean, kElemAtol, kElemRtol, "running mean");
    test::require_close(host(ctx.gpu, rvar_g), rvar, kElemAtol, kElemRtol, "running var");

    std::vector<float> y_inf(n);
    kernels::dice_forward_infer<float>(ctx.cpu, rows, cols, eps, x.data(), alpha.data(),
                                       rmean0.data(), rvar0.data(), y_inf.data());
    const auto rmean0_g = test::to_gpu(ctx.gpu, rmean0), rvar0_g = test::to_gpu(ctx.gpu, rvar0);
    kernels::dice_forward_infer<float>(ctx.gpu, rows, cols, eps, x_g.data(), alpha_g.data(),
                                       rmean0_g.data(), rvar0_g.data(), y_g.data());
    test::require_close(host(ctx.gpu, y_g), y_inf, 1e-5, kElemRtol, "dice y (inference)");
  }
}

TEST_CASE("CUDA bias_add and bias_grad match the CPU reference and bias_grad is deterministic",
          "[gpu][bias]") {
  test::ParityContexts ctx;
  for (const auto& shape : kShapes) {
    const int64_t rows = shape.rows, cols = shape.cols, n = rows * cols;
    INFO("shape " << name(shape));
    const auto y0 = test::random_vector<float>(n, 5000 + n);
    const auto bias = test::random_vector<float>(cols, 5100 + cols, -2.0, 2.0);
    const auto dbias0 = test::random_vector<float>(cols, 5200 + cols);
    const auto bias_g = test::to_gpu(ctx.gpu, bias);

    auto y = y0;
    auto y_g = test::to_gpu(ctx.gpu, y0);
    kernels::bias_add<float>(ctx.cpu, rows, cols, bias.data(), y.data());
    kernels::bias_add<float>(ctx.gpu, rows, cols, bias_g.data(), y_g.data());
    test::require_close(host(ctx.gpu, y_g), y, kElemAtol, kElemRtol, "bias_add");

    // dy = y0: a random matrix.
    auto dbias = dbias0;
    kernels::bias_grad<float>(ctx.cpu, rows, cols, y0.data(), dbias.data());
    const auto dy_g = test::to_gpu(ctx.gpu, y0);
    auto dbias_g = test::to_gpu(ctx.gpu, dbias0);
    kernels::bias_grad<float>(ctx.gpu, rows, cols, dy_g.data(), dbias_g.data());
    const auto dbias_1 = host(ctx.gpu, dbias_g);
    test::require_close(dbias_1, dbias, 1e-4 * sqrt_rows(rows), kReduceRtol, "bias_grad");
    dbias_g = test::to_gpu(ctx.gpu, dbias0);
    kernels::bias_grad<float>(ctx.gpu, rows, cols, dy_g.data(), dbias_g.data());
    test::require_bitwise_equal(host(ctx.gpu, dbias_g), dbias_1, "bias_grad run to run");
  }
}

TEST_CASE("CUDA bce_with_logits matches the CPU reference", "[gpu][loss]") {
  test::ParityContexts ctx;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(4097), int64_t(200000)}) {
    INFO("n " << n);
    auto x = test::random_vector<float>(n, 6000 + n, -12.0, 12.0);
    auto t = test::random_vector<float>(n, 6100 + n, 0.0, 1.0);
    const std::vector<float> special_x = {0.f, 40.f, -40.f, 100.f, -100.f, 100.f, -100.f};
    const std::vector<float> special_t = {0.5f, 1.f, 1.f, 0.f, 0.f, 1.f, 0.25f};
    for (size_t k = 0; k < special_x.size() && k < x.size(); ++k) {
      x[k] = special_x[k];
      t[k] = special_t[k];
    }
    const float scale = 1.f / 4096;
    std::vector<float> loss(n), dlogits(n);
    kernels::bce_with_logits<float>(ctx.cpu, n, x.data(), t.data(), scale, loss.data(),
                                    dlogits.data());
    const auto x_g = test::to_gpu(ctx.gpu, x), t_g = test::to_gpu(ctx.gpu, t);
    auto loss_g = device_tensor(ctx.gpu, n), dlogits_g = device_tensor(ctx.gpu, n);
    kernels::bce_with_logits<float>(ctx.gpu, n, x_g.data(), t_g.data(), scale, loss_g.data(),
                                    dlogits_g.data());
    const auto got_loss = host(ctx.gpu, loss_g);
    for (const float v : got_loss) REQUIRE(std::isfinite(v));
    // atol: max(x, 0) - x * t may be contracted into an FMA on the GPU (one rounding fewer).
    test::require_close(got_loss, loss, 1e-5, kElemRtol, "bce loss");
    test::require_close(host(ctx.gpu, dlogits_g), dlogits, kElemAtol * scale, kElemRtol,
                        "bce dlogits");

    // Each output alone.
    auto only_g = device_tensor(ctx.gpu, n);
    kernels::bce_with_logits<float>(ctx.gpu, n, x_g.data(), t_g.data(), scale, only_g.data(),
                                    nullptr);
    test::require_bitwise_equal(host(ctx.gpu, only_g), got_loss, "loss without dlogits");
  }
}

TEST_CASE("CUDA sum matches the CPU reference and is deterministic", "[gpu][reduce]") {
  test::ParityContexts ctx;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000), int64_t(257 * 33),
                          int64_t((1 << 20) + 3)}) {
    INFO("n " << n);
    const auto x = test::random_vector<float>(n, 7000 + n, -1.0, 1.5);
    float ref = 0;
    kernels::sum<float>(ctx.cpu, n, x.data(), &ref);
    double magnitude = 0;
    for (const float v : x) magnitude += std::abs(v);

    const auto x_g = test::to_gpu(ctx.gpu, x);
    auto out_g = test::to_gpu(ctx.gpu, std::vector<float>{7.f});  // sentinel, also for n == 0
    kernels::sum<float>(ctx.gpu, n, x_g.data(), out_g.data());
    const auto got = host(ctx.gpu, out_g);
    if (n == 0) {
      CHECK(got[0] == 0.f);
    } else {
      // A tree sum in fp32 is within ~log2(n) * eps * sum|x| of the exact sum.
      test::require_close(got, std::vector<float>{ref}, 1e-6 * magnitude, kReduceRtol, "sum");
    }
    kernels::sum<float>(ctx.gpu, n, x_g.data(), out_g.data());
    test::require_bitwise_equal(host(ctx.gpu, out_g), got, "sum run to run");
  }
}

TEST_CASE("CUDA sum_blocks gives the CPU's bits", "[gpu][reduce]") {
  test::ParityContexts ctx;
  for (const int blocks : {1, 2, 3, 8}) {
    for (const int64_t n : {int64_t(0), int64_t(1), int64_t(1000), int64_t((1 << 20) + 3)}) {
      INFO("blocks " << blocks << " n " << n);
      // Magnitudes far apart, so that any other order of the adds shows in the bits.
      auto x = test::random_vector<float>(static_cast<size_t>(n * blocks), 7100 + n, -1.0, 1.0);
      for (size_t i = 0; i < x.size(); i += 3) x[i] *= 1e7f;
      std::vector<float> ref(static_cast<size_t>(n));
      kernels::sum_blocks<float>(ctx.cpu, n, blocks, x.data(), ref.data());
      const auto x_g = test::to_gpu(ctx.gpu, x);
      auto out_g = device_tensor(ctx.gpu, n);
      kernels::sum_blocks<float>(ctx.gpu, n, blocks, x_g.data(), out_g.data());
      test::require_bitwise_equal(host(ctx.gpu, out_g), ref, "sum_blocks");
    }
  }
}

TEST_CASE("double precision on a CUDA context is refused", "[gpu][activation]") {
  test::ParityContexts ctx;
  const std::vector<double> x = {1.0};
  std::vector<double> y(1);
  CHECK_THROWS_AS(kernels::relu_forward<double>(ctx.gpu, 1, x.data(), y.data()), Error);
  CHECK_THROWS_AS(kernels::sum<double>(ctx.gpu, 1, x.data(), y.data()), Error);
}

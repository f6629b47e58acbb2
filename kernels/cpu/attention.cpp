// CPU reference for the sequence-model kernels (kernels/attention.h).
//
// The DIN unit uses the decomposition of its weight matrix W = [W_q; W_k; W_d; W_p] (four
// (D, H) blocks multiplying q, k, q − k and q ⊙ k):
//   h = q·(W_q + W_d) + k·(W_k − W_d) + (q ⊙ k)·W_p + bias,
// so the (B·T, 4D) concatenation is never built: one (B·T, D)·(D, H) GEMM for k, one for q ⊙ k
// and a (B, D)·(D, H) GEMM for the target, broadcast over positions. The CUDA version follows
// the same steps (same folded weights, same order of the additions). The plain concatenation
// loop lives in the unit test, as the independent reference.
//
// Other reductions (softmax sums, layer-norm statistics, column sums) accumulate in double in a
// fixed order: deterministic, and for T = float more accurate than the data type.

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/attention_args.h"
#include "kernels/bias.h"
#include "kernels/gemm.h"
#include "lockstep/core/philox.h"

namespace lockstep::kernels::cpu {

using detail::check_din_unit_args;
using detail::check_ld;
using detail::check_lengths;
using detail::check_size;

namespace {

/// W_q + W_d and W_k − W_d, each (D, H): the weights of q and of k in the decomposition.
template <class T>
void fold_din_weights(int64_t D, int64_t H, const T* W, std::vector<T>& w_qd,
                      std::vector<T>& w_kd) {
  const int64_t n = D * H;
  const T* w_q = W;
  const T* w_k = W + n;
  const T* w_d = W + 2 * n;
  w_qd.resize(static_cast<size_t>(n));
  w_kd.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    w_qd[i] = w_q[i] + w_d[i];
    w_kd[i] = w_k[i] - w_d[i];
  }
}

/// qk[b·T + t, :] = q[b, :] ⊙ k[b, t, :], (B·T, D) contiguous.
template <class T>
void target_times_history(int64_t B, int64_t Tn, int64_t D, const T* q, int64_t ldq, const T* k,
                          int64_t ldk, std::vector<T>& qk) {
  qk.resize(static_cast<size_t>(B * Tn * D));
  for (int64_t b = 0; b < B; ++b) {
    const T* q_row = q + b * ldq;
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      for (int64_t d = 0; d < D; ++d) qk[r * D + d] = q_row[d] * k[r * ldk + d];
    }
  }
}

}  // namespace

// ---- DIN local activation unit --------------------------------------------------------------

template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h) {
  check_din_unit_args("din_unit_forward", B, Tn, D, H, ldq, ldk);
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  std::vector<T> q_term(static_cast<size_t>(B * H), T(0));
  if (D == 0) {
    std::fill(h, h + rows * H, T(0));
  } else {
    std::vector<T> w_qd, w_kd, qk;
    fold_din_weights(D, H, W, w_qd, w_kd);
    target_times_history(B, Tn, D, q, ldq, k, ldk, qk);
    // h = k·(W_k − W_d) + (q ⊙ k)·W_p; q_term = q·(W_q + W_d).
    cpu::gemm<T>(ctx, Trans::N, Trans::N, rows, H, D, T(1), k, ldk, w_kd.data(), H, T(0), h, H);
    cpu::gemm<T>(ctx, Trans::N, Trans::N, rows, H, D, T(1), qk.data(), D, W + 3 * D * H, H, T(1), h,
                 H);
    cpu::gemm<T>(ctx, Trans::N, Trans::N, B, H, D, T(1), q, ldq, w_qd.data(), H, T(0),
                 q_term.data(), H);
  }
  for (int64_t b = 0; b < B; ++b) {
    const T* qt = q_term.data() + b * H;
    for (int64_t t = 0; t < Tn; ++t) {
      T* h_row = h + (b * Tn + t) * H;
      for (int64_t j = 0; j < H; ++j) h_row[j] += qt[j] + bias[j];
    }
  }
}

// With S[b] = Σ_t dh[b, t] and P = dh·W_pᵀ (B·T, D):
//   dW_q += qᵀS,  dW_k += kᵀdh,  dW_d += qᵀS − kᵀdh,  dW_p += (q ⊙ k)ᵀdh,  dbias += Σ_b S[b];
//   dq[b] += S[b]·(W_q + W_d)ᵀ + Σ_t P[b, t] ⊙ k[b, t];
//   dk[b, t] += dh[b, t]·(W_k − W_d)ᵀ + P[b, t] ⊙ q[b].
template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk) {
  constexpr const char* op = "din_unit_backward";
  check_din_unit_args(op, B, Tn, D, H, ldq, ldk);
  if (dq != nullptr) check_ld(op, "lddq", lddq, "D", D);
  if (dk != nullptr) check_ld(op, "lddk", lddk, "D", D);
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;

  // S: (B, H), summed over positions in increasing t.
  std::vector<T> S(static_cast<size_t>(B * H), T(0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      const T* dh_row = dh + (b * Tn + t) * H;
      for (int64_t j = 0; j < H; ++j) S[b * H + j] += dh_row[j];
    }
  cpu::bias_grad<T>(ctx, B, H, S.data(), dbias);
  if (D == 0) return;

  const int64_t DH = D * H;
  std::vector<T> w_qd, w_kd, qk, g_q(static_cast<size_t>(DH)), g_k(static_cast<size_t>(DH));
  fold_din_weights(D, H, W, w_qd, w_kd);
  target_times_history(B, Tn, D, q, ldq, k, ldk, qk);
  cpu::gemm<T>(ctx, Trans::T, Trans::N, D, H, rows, T(1), k, ldk, dh, H, T(0), g_k.data(), H);
  cpu::gemm<T>(ctx, Trans::T, Trans::N, D, H, B, T(1), q, ldq, S.data(), H, T(0), g_q.data(), H);
  cpu::gemm<T>(ctx, Trans::T, Trans::N, D, H, rows, T(1), qk.data(), D, dh, H, T(1), dW + 3 * DH,
               H);
  for (int64_t i = 0; i < DH; ++i) {
    dW[i] += g_q[i];
    dW[DH + i] += g_k[i];
    dW[2 * DH + i] += g_q[i] - g_k[i];
  }
  if (dq == nullptr && dk == nullptr) return;

  std::vector<T>& P = qk;  // (B·T, D), reuses the q ⊙ k buffer
  cpu::gemm<T>(ctx, Trans::N, Trans::T, rows, D, H, T(1), dh, H, W + 3 * DH, H, T(0), P.data(), D);
  if (dk != nullptr) {
    cpu::gemm<T>(ctx, Trans::N, Trans::T, rows, D, H, T(1), dh, H, w_kd.data(), H, T(1), dk, lddk);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t r = b * Tn + t;
        for (int64_t d = 0; d < D; ++d) dk[r * lddk + d] += P[r * D + d] * q[b * ldq + d];
      }
  }
  if (dq != nullptr) {
    cpu::gemm<T>(ctx, Trans::N, Trans::T, B, D, H, T(1), S.data(), H, w_qd.data(), H, T(1), dq,
                 lddq);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) {
        T sum = T(0);
        for (int64_t t = 0; t < Tn; ++t) {
          const int64_t r = b * Tn + t;
          sum += P[r * D + d] * k[r * ldk + d];
        }
        dq[b * lddq + d] += sum;
      }
  }
}

// ---- Masked weighted sum --------------------------------------------------------------------

template <class T>
void weighted_sum_forward(const Context&, int64_t B, int64_t Tn, int64_t D, const int64_t* lengths,
                          const T* w, const T* x, int64_t ldx, T* out, int64_t ldo) {
  constexpr const char* op = "weighted_sum_forward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "ldo", ldo, "D", D);
  check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b) {
    T* out_row = out + b * ldo;
    std::fill(out_row, out_row + D, T(0));
    for (int64_t t = 0; t < lengths[b]; ++t) {
      const T wt = w[b * Tn + t];
      const T* x_row = x + (b * Tn + t) * ldx;
      for (int64_t d = 0; d < D; ++d) out_row[d] += wt * x_row[d];
    }
  }
}

template <class T>
void weighted_sum_backward(const Context&, int64_t B, int64_t Tn, int64_t D, const int64_t* lengths,
                           const T* w, const T* x, int64_t ldx, const T* dout, int64_t lddo, T* dw,
                           T* dx, int64_t lddx) {
  constexpr const char* op = "weighted_sum_backward";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "D", D);
  check_ld(op, "ldx", ldx, "D", D);
  check_ld(op, "lddo", lddo, "D", D);
  if (dx != nullptr) check_ld(op, "lddx", lddx, "D", D);
  check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b) {
    const T* g = dout + b * lddo;
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t r = b * Tn + t;
      if (t >= lengths[b]) {
        dw[r] = T(0);
        continue;
      }
      const T* x_row = x + r * ldx;
      T dot = T(0);
      for (int64_t d = 0; d < D; ++d) dot += g[d] * x_row[d];
      dw[r] = dot;
      if (dx != nullptr) {
        const T wt = w[r];
        for (int64_t d = 0; d < D; ++d) dx[r * lddx + d] += wt * g[d];
      }
    }
  }
}

// ---- Masked softmax -------------------------------------------------------------------------

template <class T>
void masked_softmax_forward(const Context&, int64_t rows, int64_t n, int64_t group,
                            const int64_t* lengths, const T* x, T* y) {
  constexpr const char* op = "masked_softmax_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(group >= 1, "{}: group = {} must be >= 1", op, group);
  check_lengths(op, detail::softmax_samples(rows, group), lengths, n, "n");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t valid = lengths[r / group];
    const T* x_row = x + r * n;
    T* y_row = y + r * n;
    // Subtracting the row max keeps every exp argument <= 0: no overflow for any finite input.
    T max = valid > 0 ? x_row[0] : T(0);
    for (int64_t j = 1; j < valid; ++j) max = std::max(max, x_row[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < valid; ++j) {
      const T e = std::exp(x_row[j] - max);  // y may alias x: x_row[j] is read before y_row[j]
      y_row[j] = e;
      sum += static_cast<double>(e);
    }
    // sum >= 1 (the max contributes exp(0)), so the division is safe.
    const T inv = static_cast<T>(1.0 / sum);
    for (int64_t j = 0; j < valid; ++j) y_row[j] *= inv;
    for (int64_t j = valid; j < n; ++j) y_row[j] = T(0);
  }
}

template <class T>
void masked_softmax_backward(const Context&, int64_t rows, int64_t n, const T* y, const T* dy,
                             T* dx) {
  constexpr const char* op = "masked_softmax_backward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  for (int64_t r = 0; r < rows; ++r) {
    const T* y_row = y + r * n;
    const T* dy_row = dy + r * n;
    T* dx_row = dx + r * n;
    // Masked entries (y == 0) are skipped, so whatever dy holds there cannot leak in.
    double dot = 0.0;
    for (int64_t j = 0; j < n; ++j)
      if (y_row[j] != T(0)) dot += static_cast<double>(y_row[j]) * static_cast<double>(dy_row[j]);
    const T s = static_cast<T>(dot);
    for (int64_t j = 0; j < n; ++j)  // dx may alias dy: dot was complete before any write
      dx_row[j] = y_row[j] != T(0) ? y_row[j] * (dy_row[j] - s) : T(0);
  }
}

// ---- Padding mask ---------------------------------------------------------------------------

template <class T>
void mask_positions(const Context&, int64_t B, int64_t Tn, int64_t W, const int64_t* lengths, T* x,
                    int64_t ld) {
  constexpr const char* op = "mask_positions";
  check_size(op, "B", B);
  check_size(op, "T", Tn);
  check_size(op, "W", W);
  check_ld(op, "ld", ld, "W", W);
  check_lengths(op, B, lengths, Tn, "T");
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = lengths[b]; t < Tn; ++t) std::fill_n(x + (b * Tn + t) * ld, W, T(0));
}

// ---- Layer normalisation --------------------------------------------------------------------

template <class T>
void layer_norm_forward(const Context&, int64_t rows, int64_t n, T eps, const T* x, const T* gamma,
                        const T* beta, T* y, T* mean, T* rstd) {
  constexpr const char* op = "layer_norm_forward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  LOCKSTEP_CHECK(n >= 1 || rows == 0, "{}: n = 0 but rows = {} (a row needs an element)", op, rows);
  for (int64_t r = 0; r < rows; ++r) {
    const T* x_row = x + r * n;
    // Two passes (mean, then squared deviations): no cancellation as in E[x²] − E[x]².
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(x_row[j]);
    const T m = static_cast<T>(sum / static_cast<double>(n));
    double sq = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const double d = static_cast<double>(x_row[j]) - static_cast<double>(m);
      sq += d * d;
    }
    const T var = static_cast<T>(sq / static_cast<double>(n));
    const T s = T(1) / std::sqrt(var + eps);
    mean[r] = m;
    rstd[r] = s;
    // The elementwise part uses the stored (type T) statistics, exactly as the backward will.
    T* y_row = y + r * n;
    for (int64_t j = 0; j < n; ++j) y_row[j] = (x_row[j] - m) * s * gamma[j] + beta[j];
  }
}

// With xhat = (x − mean)·rstd and g = dy ⊙ gamma:
//   dx = rstd · (g − mean_j(g) − xhat · mean_j(g ⊙ xhat)),
//   dgamma += Σ_rows dy ⊙ xhat,  dbeta += Σ_rows dy.
template <class T>
void layer_norm_backward(const Context&, int64_t rows, int64_t n, const T* x, const T* gamma,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
  constexpr const char* op = "layer_norm_backward";
  check_size(op, "rows", rows);
  check_size(op, "n", n);
  if (rows == 0 || n == 0) return;
  std::vector<double> dgamma_sum(static_cast<size_t>(n), 0.0),
      dbeta_sum(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* x_row = x + r * n;
    const T* dy_row = dy + r * n;
    const T m = mean[r], s = rstd[r];
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const T xhat = (x_row[j] - m) * s;
      const T g = dy_row[j] * gamma[j];
      sum_g += static_cast<double>(g);
      sum_g_xhat += static_cast<double>(g) * static_cast<double>(xhat);
      dgamma_sum[j] += static_cast<double>(dy_row[j]) * static_cast<double>(xhat);
      dbeta_sum[j] += static_cast<double>(dy_row[j]);
    }
    const T mean_g = static_cast<T>(sum_g / static_cast<double>(n));
    const T mean_g_xhat = static_cast<T>(sum_g_xhat / static_cast<double>(n));
    T* dx_row = dx + r * n;
    for (int64_t j = 0; j < n; ++j) {  // dx may alias dy: this row's dy is no longer needed after
      const T xhat = (x_row[j] - m) * s;
      const T g = dy_row[j] * gamma[j];
      dx_row[j] = s * (g - mean_g - xhat * mean_g_xhat);
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    dgamma[j] += static_cast<T>(dgamma_sum[j]);
    dbeta[j] += static_cast<T>(dbeta_sum[j]);
  }
}

// ---- Dropout --------------------------------------------------------------------------------
//
// The keep test compares the 24-bit uniform float with p in float, and the survivors are
// multiplied by the float 1 / (1 − p): the same operations as the CUDA kernel, so for T = float
// the two agree bitwise.

namespace {
template <class T>
void apply_dropout(int64_t n, float p, uint64_t seed, uint64_t offset, const T* in, T* out) {
  if (p == 0.0f) {
    if (out != in && n > 0) std::memmove(out, in, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  const float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; ++i) {
    const float u =
        uniform01_from_u32(philox_u32(seed, kDropoutStream, offset + static_cast<uint64_t>(i)));
    // A select, not a multiply by a 0/1 mask: a non-finite dropped input gives 0, not NaN.
    out[i] = u >= p ? in[i] * static_cast<T>(scale) : T(0);
  }
}
}  // namespace

template <class T>
void dropout_forward(const Context&, int64_t n, float p, uint64_t seed, uint64_t offset, const T* x,
                     T* y) {
  check_size("dropout_forward", "n", n);
  detail::check_dropout_p("dropout_forward", p);
  apply_dropout(n, p, seed, offset, x, y);
}

template <class T>
void dropout_backward(const Context&, int64_t n, float p, uint64_t seed, uint64_t offset,
                      const T* dy, T* dx) {
  check_size("dropout_backward", "n", n);
  detail::check_dropout_p("dropout_backward", p);
  apply_dropout(n, p, seed, offset, dy, dx);
}

// ---- Explicit instantiations ----------------------------------------------------------------

#define LOCKSTEP_INSTANTIATE(T)                                                                    \
  template void din_unit_forward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                    int64_t, const T*, int64_t, const T*, const T*, T*);           \
  template void din_unit_backward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*, \
                                     int64_t, const T*, int64_t, const T*, const T*, T*, T*, T*,   \
                                     int64_t, T*, int64_t);                                        \
  template void weighted_sum_forward<T>(const Context&, int64_t, int64_t, int64_t, const int64_t*, \
                                        const T*, const T*, int64_t, T*, int64_t);                 \
  template void weighted_sum_backward<T>(const Context&, int64_t, int64_t, int64_t,                \
                                         const int64_t*, const T*, const T*, int64_t, const T*,    \
                                         int64_t, T*, T*, int64_t);                                \
  template void masked_softmax_forward<T>(const Context&, int64_t, int64_t, int64_t,               \
                                          const int64_t*, const T*, T*);                           \
  template void masked_softmax_backward<T>(const Context&, int64_t, int64_t, const T*, const T*,   \
                                           T*);                                                    \
  template void mask_positions<T>(const Context&, int64_t, int64_t, int64_t, const int64_t*, T*,   \
                                  int64_t);                                                        \
  template void layer_norm_forward<T>(const Context&, int64_t, int64_t, T, const T*, const T*,     \
                                      const T*, T*, T*, T*);                                       \
  template void layer_norm_backward<T>(const Context&, int64_t, int64_t, const T*, const T*,       \
                                       const T*, const T*, const T*, T*, T*, T*);                  \
  template void dropout_forward<T>(const Context&, int64_t, float, uint64_t, uint64_t, const T*,   \
                                   T*);                                                            \
  template void dropout_backward<T>(const Context&, int64_t, float, uint64_t, uint64_t, const T*,  \
                                    T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

// CPU reference for the DIN local activation unit (kernels/din_unit.h).
//
// The unit uses the decomposition of its weight matrix W = [W_q; W_k; W_d; W_p] (four (D, H)
// blocks multiplying q, k, q − k and q ⊙ k):
//   h = q·(W_q + W_d) + k·(W_k − W_d) + (q ⊙ k)·W_p + bias,
// so the (B·T, 4D) concatenation is never built: one (B·T, D)·(D, H) GEMM for k, one for q ⊙ k
// and a (B, D)·(D, H) GEMM for the target, broadcast over positions. The CUDA version follows
// the same steps (same folded weights, same order of the additions). The plain concatenation
// loop lives in the unit test, as the independent reference. Sizes and strides are validated by
// the dispatcher.

#include "kernels/din_unit.h"

#include <algorithm>
#include <vector>

#include "kernels/bias.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace lockstep::kernels::cpu {

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
void target_times_history(const Context& ctx, int64_t B, int64_t Tn, int64_t D, const T* q,
                          int64_t ldq, const T* k, int64_t ldk, std::vector<T>& qk) {
  qk.resize(static_cast<size_t>(B * Tn * D));
  parallel_for(ctx, B, grain_for(Tn * D), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* q_row = q + b * ldq;
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t r = b * Tn + t;
        for (int64_t d = 0; d < D; ++d) qk[r * D + d] = q_row[d] * k[r * ldk + d];
      }
    }
  });
}

}  // namespace

template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  // Scratch kept between calls: a steady-state step allocates nothing.
  LOCKSTEP_KEPT_VECTOR(T, q_term);
  LOCKSTEP_KEPT_VECTOR(T, w_qd);
  LOCKSTEP_KEPT_VECTOR(T, w_kd);
  LOCKSTEP_KEPT_VECTOR(T, qk);
  q_term.assign(static_cast<size_t>(B * H), T(0));
  if (D == 0) {
    std::fill(h, h + rows * H, T(0));
  } else {
    fold_din_weights(D, H, W, w_qd, w_kd);
    target_times_history(ctx, B, Tn, D, q, ldq, k, ldk, qk);
    // h = k·(W_k − W_d) + (q ⊙ k)·W_p; q_term = q·(W_q + W_d).
    cpu::gemm<T>(ctx, Trans::N, Trans::N, rows, H, D, T(1), k, ldk, w_kd.data(), H, T(0), h, H);
    cpu::gemm<T>(ctx, Trans::N, Trans::N, rows, H, D, T(1), qk.data(), D, W + 3 * D * H, H, T(1), h,
                 H);
    cpu::gemm<T>(ctx, Trans::N, Trans::N, B, H, D, T(1), q, ldq, w_qd.data(), H, T(0),
                 q_term.data(), H);
  }
  parallel_for(ctx, B, grain_for(Tn * H), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* qt = q_term.data() + b * H;
      for (int64_t t = 0; t < Tn; ++t) {
        T* h_row = h + (b * Tn + t) * H;
        for (int64_t j = 0; j < H; ++j) h_row[j] += qt[j] + bias[j];
      }
    }
  });
}

// With S[b] = Σ_t dh[b, t] and P = dh·W_pᵀ (B·T, D):
//   dW_q += qᵀS,  dW_k += kᵀdh,  dW_d += qᵀS − kᵀdh,  dW_p += (q ⊙ k)ᵀdh,  dbias += Σ_b S[b];
//   dq[b] += S[b]·(W_q + W_d)ᵀ + Σ_t P[b, t] ⊙ k[b, t];
//   dk[b, t] += dh[b, t]·(W_k − W_d)ᵀ + P[b, t] ⊙ q[b].
template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;

  // S: (B, H), summed over positions in increasing t.
  // Scratch kept between calls: a steady-state step allocates nothing.
  LOCKSTEP_KEPT_VECTOR(T, S);
  LOCKSTEP_KEPT_VECTOR(T, w_qd);
  LOCKSTEP_KEPT_VECTOR(T, w_kd);
  LOCKSTEP_KEPT_VECTOR(T, qk);
  LOCKSTEP_KEPT_VECTOR(T, g_q);
  LOCKSTEP_KEPT_VECTOR(T, g_k);
  S.assign(static_cast<size_t>(B * H), T(0));
  parallel_for(ctx, B, grain_for(Tn * H), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* dh_row = dh + (b * Tn + t) * H;
        for (int64_t j = 0; j < H; ++j) S[b * H + j] += dh_row[j];
      }
  });
  cpu::bias_grad<T>(ctx, B, H, S.data(), dbias);
  if (D == 0) return;

  const int64_t DH = D * H;
  g_q.resize(static_cast<size_t>(DH));
  g_k.resize(static_cast<size_t>(DH));
  fold_din_weights(D, H, W, w_qd, w_kd);
  target_times_history(ctx, B, Tn, D, q, ldq, k, ldk, qk);
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
    parallel_for(ctx, B, grain_for(Tn * D), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < Tn; ++t) {
          const int64_t r = b * Tn + t;
          for (int64_t d = 0; d < D; ++d) dk[r * lddk + d] += P[r * D + d] * q[b * ldq + d];
        }
    });
  }
  if (dq != nullptr) {
    cpu::gemm<T>(ctx, Trans::N, Trans::T, B, D, H, T(1), S.data(), H, w_qd.data(), H, T(1), dq,
                 lddq);
    parallel_for(ctx, B, grain_for(Tn * D), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t d = 0; d < D; ++d) {
          T sum = T(0);
          for (int64_t t = 0; t < Tn; ++t) {
            const int64_t r = b * Tn + t;
            sum += P[r * D + d] * k[r * ldk + d];
          }
          dq[b * lddq + d] += sum;
        }
    });
  }
}

#define LOCKSTEP_INSTANTIATE(T)                                                                    \
  template void din_unit_forward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                    int64_t, const T*, int64_t, const T*, const T*, T*);           \
  template void din_unit_backward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*, \
                                     int64_t, const T*, int64_t, const T*, const T*, T*, T*, T*,   \
                                     int64_t, T*, int64_t);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

// CPU reference for the DIN local activation unit (kernels/din_unit.h).
//
// The unit uses the decomposition of its weight matrix W = [W_q; W_k; W_d; W_p] (four (D, H)
// blocks multiplying q, k, q − k and q ⊙ k):
//   h = [k, q ⊙ k]·[W_k − W_d; W_p] + q·(W_q + W_d) + bias,
// so the (B·T, 4D) concatenation is never built: per tile of samples, X = [k, q ⊙ k] (rows, 2D)
// times the folded (2D, H) weights, plus the target's (B, H) term broadcast over positions.
//
// Fused by tiles (issue 14): the work is cut into tiles of whole samples (about kTileRows rows),
// each tile done start to end by one thread — X built, its GEMMs, the element-wise epilogue —
// while its X, dh and the backward's Y = dh·[W_k − W_d; W_p]ᵀ stay in that core's cache. dh is
// read from memory once, the (B·T, D) q ⊙ k and P tensors never go to memory. The tiles depend on
// B and T only, and the weight gradients are partial products of fixed chunks of tiles added in
// chunk order, so the bits do not depend on the thread count. The CUDA version follows the same
// algebra (same folded weights, same order of the element-wise additions) with whole-batch GEMMs.
// The plain concatenation loop lives in the unit test, as the independent reference. Sizes and
// strides are validated by the dispatcher.

#include "kernels/din_unit.h"

#include <algorithm>
#include <vector>

#include "kernels/bias.h"
#include "kernels/cpu/gemm_serial.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/prelu_rows.h"

namespace lockstep::kernels::cpu {

namespace {

constexpr int64_t kTileRows = 512;    // rows (positions) per tile, about
constexpr int64_t kChunkRows = 4096;  // rows per chunk of the backward's weight-gradient partials

/// Samples per tile: whole samples, about kTileRows positions.
int64_t tile_samples(int64_t Tn) { return std::max<int64_t>(1, kTileRows / Tn); }
/// Samples per chunk of the backward: a whole number of tiles, about kChunkRows positions.
int64_t chunk_samples(int64_t Tn) {
  const int64_t ts = tile_samples(Tn);
  return ts * std::max<int64_t>(1, kChunkRows / (ts * Tn));
}

/// w_x = [W_k − W_d; W_p] (2D, H), the weights of X = [k, q ⊙ k]; w_qd = W_q + W_d (D, H).
template <class T>
void fold_din_weights(int64_t D, int64_t H, const T* W, std::vector<T>& w_x, std::vector<T>& w_qd) {
  const int64_t n = D * H;
  const T* w_q = W;
  const T* w_k = W + n;
  const T* w_d = W + 2 * n;
  const T* w_p = W + 3 * n;
  w_x.resize(static_cast<size_t>(2 * n));
  w_qd.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    w_qd[i] = w_q[i] + w_d[i];
    w_x[i] = w_k[i] - w_d[i];
    w_x[n + i] = w_p[i];
  }
}

/// X[(b − s0)·T + t] = [k[b, t], q[b] ⊙ k[b, t]] for the samples b of [s0, s1): (rows, 2D).
template <class T>
void build_x(int64_t s0, int64_t s1, int64_t Tn, int64_t D, const T* q, int64_t ldq, const T* k,
             int64_t ldk, T* x) {
  for (int64_t b = s0; b < s1; ++b) {
    const T* q_row = q + b * ldq;
    for (int64_t t = 0; t < Tn; ++t, x += 2 * D) {
      const T* k_row = k + (b * Tn + t) * ldk;
      for (int64_t d = 0; d < D; ++d) {
        x[d] = k_row[d];
        x[D + d] = q_row[d] * k_row[d];
      }
    }
  }
}

/// The forward of din_unit_forward, and with alpha != nullptr of din_unit_prelu_forward: the
/// tile's epilogue then also writes a = PReLU(h) while the rows are in cache.
template <class T>
void unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                  int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, const T* alpha,
                  T* h, T* a) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;
  // Scratch kept between calls: a steady-state step allocates nothing.
  LOCKSTEP_KEPT_VECTOR(T, w_x);
  LOCKSTEP_KEPT_VECTOR(T, w_qd);
  if (D > 0) fold_din_weights(D, H, W, w_x, w_qd);
  const int64_t ts = tile_samples(Tn);
  LOCKSTEP_SLOT_VECTORS(T, x_slots, ts * Tn * 2 * D);  // each thread's tile of X
  LOCKSTEP_SLOT_VECTORS(T, q_term_slots, ts * H);      // and its (samples, H) q·(W_q + W_d)
  parallel_for(ctx, B, ts, [&](int64_t s0, int64_t s1) {
    T* X = x_slots[pool_slot()].data();
    T* q_term = q_term_slots[pool_slot()].data();
    const int64_t n = s1 - s0;
    T* h_tile = h + s0 * Tn * H;
    if (D > 0) {
      build_x(s0, s1, Tn, D, q, ldq, k, ldk, X);
      gemm_serial(Trans::N, Trans::N, n * Tn, H, 2 * D, T(1), X, 2 * D, w_x.data(), H, T(0), h_tile,
                  H);
      gemm_serial(Trans::N, Trans::N, n, H, D, T(1), q + s0 * ldq, ldq, w_qd.data(), H, T(0),
                  q_term, H);
    }
    for (int64_t b = 0; b < n; ++b) {
      const T* qt = q_term + b * H;
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t r = b * Tn + t;
        T* h_row = h_tile + r * H;
        if (D > 0) {
          for (int64_t j = 0; j < H; ++j) h_row[j] += qt[j] + bias[j];
        } else {  // h = bias
          std::copy(bias, bias + H, h_row);
        }
        if (alpha != nullptr) prelu_forward_row(H, h_row, alpha, a + (s0 * Tn + r) * H);
      }
    }
  });
}

// With S[b] = Σ_t dh[b, t], X = [k, q ⊙ k] and Y = dh·[W_k − W_d; W_p]ᵀ = [Y_k, P] (B·T, 2D):
//   [g_k; g_p] = Xᵀdh,  g_q = qᵀS;  dW_q += g_q,  dW_k += g_k,  dW_d += g_q − g_k,  dW_p += g_p;
//   dbias += Σ_b S[b];
//   dq[b] += S[b]·(W_q + W_d)ᵀ + Σ_t P[b, t] ⊙ k[b, t];
//   dk[b, t] += Y_k[b, t] + P[b, t] ⊙ q[b].
//
// unit_backward is din_unit_backward, and with h != nullptr din_unit_prelu_backward: `dh` is
// then da, and each tile's dh = da ⊙ PReLU'(h) is formed in the thread's scratch (never written
// to memory), its dalpha terms summed in double per chunk like the weight gradients.
template <class T>
void unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                   int64_t ldq, const T* k, int64_t ldk, const T* W, const T* h, const T* alpha,
                   const T* dh, T* dW, T* dbias, T* dalpha, T* dq, int64_t lddq, T* dk,
                   int64_t lddk) {
  const int64_t rows = B * Tn;
  if (rows == 0 || H == 0) return;

  // Scratch kept between calls: a steady-state step allocates nothing.
  LOCKSTEP_KEPT_VECTOR(T, S);                    // (B, H), summed over positions in increasing t
  LOCKSTEP_KEPT_VECTOR(T, w_x);                  // [W_k − W_d; W_p]
  LOCKSTEP_KEPT_VECTOR(T, w_qd);                 // W_q + W_d
  LOCKSTEP_KEPT_VECTOR(T, partial);              // per chunk: [g_k; g_p; g_q] (3D, H)
  LOCKSTEP_KEPT_VECTOR(double, dalpha_partial);  // per chunk: (H)
  S.resize(static_cast<size_t>(B * H));
  const int64_t DH = D * H, ts = tile_samples(Tn), cs = chunk_samples(Tn);
  const int64_t chunks = (B + cs - 1) / cs;
  if (D > 0) fold_din_weights(D, H, W, w_x, w_qd);
  partial.resize(static_cast<size_t>(chunks * 3 * DH));
  if (h != nullptr) dalpha_partial.assign(static_cast<size_t>(chunks * H), 0.0);
  const int64_t tile_max = ts * Tn;
  LOCKSTEP_SLOT_VECTORS(T, x_slots, tile_max * 2 * D);  // each thread's [k, q ⊙ k]
  LOCKSTEP_SLOT_VECTORS(T, y_slots, tile_max * 2 * D);  // and dh·[W_k − W_d; W_p]ᵀ
  LOCKSTEP_SLOT_VECTORS(T, g_slots, h != nullptr ? tile_max * H : 0);  // and dh from da
  LOCKSTEP_SLOT_VECTORS(T, acc_slots, D);                              // and a row of dq
  parallel_for(ctx, B, cs, [&](int64_t c0, int64_t c1) {
    T* X = x_slots[pool_slot()].data();
    T* Y = y_slots[pool_slot()].data();
    T* G = g_slots[pool_slot()].data();
    T* acc = acc_slots[pool_slot()].data();
    T* part = partial.data() + (c0 / cs) * 3 * DH;
    for (int64_t s0 = c0; s0 < c1; s0 += ts) {
      const int64_t s1 = std::min(c1, s0 + ts), n = s1 - s0, tile_rows = n * Tn;
      const T* dh_tile = dh + s0 * Tn * H;
      if (h != nullptr) {  // dh = da ⊙ PReLU'(h)
        double* dalpha_sum = dalpha_partial.data() + (c0 / cs) * H;
        for (int64_t r = 0; r < tile_rows; ++r)
          prelu_backward_row(H, h + (s0 * Tn + r) * H, alpha, dh_tile + r * H, G + r * H,
                             dalpha_sum);
        dh_tile = G;
      }
      for (int64_t b = s0; b < s1; ++b) {
        T* s_row = S.data() + b * H;
        std::fill(s_row, s_row + H, T(0));
        for (int64_t t = 0; t < Tn; ++t) {
          const T* dh_row = dh_tile + ((b - s0) * Tn + t) * H;
          for (int64_t j = 0; j < H; ++j) s_row[j] += dh_row[j];
        }
      }
      if (D == 0) continue;
      build_x(s0, s1, Tn, D, q, ldq, k, ldk, X);
      const T beta = s0 == c0 ? T(0) : T(1);  // the chunk's first tile starts its partials
      gemm_serial(Trans::T, Trans::N, 2 * D, H, tile_rows, T(1), X, 2 * D, dh_tile, H, beta, part,
                  H);
      gemm_serial(Trans::T, Trans::N, D, H, n, T(1), q + s0 * ldq, ldq, S.data() + s0 * H, H, beta,
                  part + 2 * DH, H);
      if (dq == nullptr && dk == nullptr) continue;
      gemm_serial(Trans::N, Trans::T, tile_rows, 2 * D, H, T(1), dh_tile, H, w_x.data(), H, T(0), Y,
                  2 * D);
      if (dk != nullptr) {
        for (int64_t b = s0; b < s1; ++b) {
          const T* q_row = q + b * ldq;
          for (int64_t t = 0; t < Tn; ++t) {
            const int64_t r = b * Tn + t;
            const T* y = Y + (r - s0 * Tn) * 2 * D;
            T* g = dk + r * lddk;
            for (int64_t d = 0; d < D; ++d) g[d] = (g[d] + y[d]) + y[D + d] * q_row[d];
          }
        }
      }
      if (dq != nullptr) {
        gemm_serial(Trans::N, Trans::T, n, D, H, T(1), S.data() + s0 * H, H, w_qd.data(), H, T(1),
                    dq + s0 * lddq, lddq);
        // Σ_t P[b, t] ⊙ k[b, t], t in increasing order, the D columns side by side.
        for (int64_t b = s0; b < s1; ++b) {
          std::fill(acc, acc + D, T(0));
          for (int64_t t = 0; t < Tn; ++t) {
            const int64_t r = b * Tn + t;
            const T* p = Y + (r - s0 * Tn) * 2 * D + D;
            const T* k_row = k + r * ldk;
            for (int64_t d = 0; d < D; ++d) acc[d] += p[d] * k_row[d];
          }
          for (int64_t d = 0; d < D; ++d) dq[b * lddq + d] += acc[d];
        }
      }
    }
  });
  if (h != nullptr)
    for (int64_t j = 0; j < H; ++j) {
      double total = 0.0;
      for (int64_t c = 0; c < chunks; ++c) total += dalpha_partial[c * H + j];
      dalpha[j] += static_cast<T>(total);
    }
  cpu::bias_grad<T>(ctx, B, H, S.data(), dbias);
  if (D == 0) return;
  // The chunks' partial products, added in chunk order.
  for (int64_t i = 0; i < DH; ++i) {
    T g_k = T(0), g_p = T(0), g_q = T(0);
    for (int64_t c = 0; c < chunks; ++c) {
      const T* part = partial.data() + c * 3 * DH;
      g_k += part[i];
      g_p += part[DH + i];
      g_q += part[2 * DH + i];
    }
    dW[i] += g_q;
    dW[DH + i] += g_k;
    dW[2 * DH + i] += g_q - g_k;
    dW[3 * DH + i] += g_p;
  }
}

}  // namespace

template <class T>
void din_unit_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                      int64_t ldq, const T* k, int64_t ldk, const T* W, const T* bias, T* h) {
  unit_forward<T>(ctx, B, Tn, D, H, q, ldq, k, ldk, W, bias, nullptr, h, nullptr);
}

template <class T>
void din_unit_prelu_forward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                            const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                            const T* bias, const T* alpha, T* h, T* a) {
  unit_forward<T>(ctx, B, Tn, D, H, q, ldq, k, ldk, W, bias, alpha, h, a);
}

template <class T>
void din_unit_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H, const T* q,
                       int64_t ldq, const T* k, int64_t ldk, const T* W, const T* dh, T* dW,
                       T* dbias, T* dq, int64_t lddq, T* dk, int64_t lddk) {
  unit_backward<T>(ctx, B, Tn, D, H, q, ldq, k, ldk, W, nullptr, nullptr, dh, dW, dbias, nullptr,
                   dq, lddq, dk, lddk);
}

template <class T>
void din_unit_prelu_backward(const Context& ctx, int64_t B, int64_t Tn, int64_t D, int64_t H,
                             const T* q, int64_t ldq, const T* k, int64_t ldk, const T* W,
                             const T* h, const T* alpha, T* da, T* dW, T* dbias, T* dalpha, T* dq,
                             int64_t lddq, T* dk, int64_t lddk) {
  unit_backward<T>(ctx, B, Tn, D, H, q, ldq, k, ldk, W, h, alpha, da, dW, dbias, dalpha, dq, lddq,
                   dk, lddk);
}

#define LOCKSTEP_INSTANTIATE(T)                                                                    \
  template void din_unit_forward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*,  \
                                    int64_t, const T*, int64_t, const T*, const T*, T*);           \
  template void din_unit_backward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, const T*, \
                                     int64_t, const T*, int64_t, const T*, const T*, T*, T*, T*,   \
                                     int64_t, T*, int64_t);                                        \
  template void din_unit_prelu_forward<T>(const Context&, int64_t, int64_t, int64_t, int64_t,      \
                                          const T*, int64_t, const T*, int64_t, const T*,          \
                                          const T*, const T*, T*, T*);                             \
  template void din_unit_prelu_backward<T>(                                                        \
      const Context&, int64_t, int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t,    \
      const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t, T*, int64_t);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

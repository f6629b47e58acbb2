// CPU reference for the multi-head attention core (kernels/attention.h): one sample per task, all
// of its heads, so that its Q, K and V rows (L · 3d values: 2.6 KB at bst-bench's shapes) stay
// in cache while every head reads them. Orders as the header states; a sample's outputs are
// disjoint from every other's, so the bits do not depend on the thread count.

#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {

namespace {

/// dst[c · L + k] = src[k · ld + c] for k < len, c < dh: a head's rows transposed, so that the
/// loops over keys run over contiguous memory.
template <class T>
void transpose_head(const T* src, int64_t ld, int64_t len, int64_t dh, int64_t L, T* dst) {
  for (int64_t k = 0; k < len; ++k)
    for (int64_t c = 0; c < dh; ++c) dst[c * L + k] = src[k * ld + c];
}

}  // namespace

template <class T>
void attention_forward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh, T scale,
                       const int64_t* lengths, const T* qkv, T* probs, T* out) {
  detail::check_lengths("attention_forward", B, lengths, L, "L");
  const int64_t d = heads * dh, ld = 3 * d;
  LOCKSTEP_SLOT_VECTORS(T, kt_slots, dh * L);  // each thread's transposed K block of a head
  parallel_for(ctx, B, grain_for(heads * L * L * dh), [&](int64_t b0, int64_t b1) {
    T* kt = kt_slots[pool_slot()].data();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = lengths[b];
      const T* rows = qkv + b * L * ld;
      for (int64_t i = 0; i < heads; ++i) {
        transpose_head(rows + d + i * dh, ld, len, dh, L, kt);
        for (int64_t q = 0; q < L; ++q) {
          T* p = probs + ((b * heads + i) * L + q) * L;
          T* o = out + (b * L + q) * d + i * dh;
          std::fill_n(o, dh, T(0));
          std::fill_n(p, L, T(0));
          if (len == 0) continue;
          // Scores: Σ_c in c order per key, the keys side by side.
          const T* qr = rows + q * ld + i * dh;
          for (int64_t c = 0; c < dh; ++c) {
            const T qc = qr[c];
            const T* kc = kt + c * L;
            for (int64_t k = 0; k < len; ++k) p[k] += qc * kc[k];
          }
          T max = p[0] * scale;
          for (int64_t k = 0; k < len; ++k) {
            p[k] *= scale;
            max = std::max(max, p[k]);
          }
          double sum = 0.0;  // >= 1: the max contributes exp(0)
          for (int64_t k = 0; k < len; ++k) {
            p[k] = std::exp(p[k] - max);
            sum += static_cast<double>(p[k]);
          }
          const T inv = static_cast<T>(1.0 / sum);
          for (int64_t k = 0; k < len; ++k) {
            p[k] *= inv;
            const T pk = p[k];
            const T* vr = rows + k * ld + 2 * d + i * dh;
            for (int64_t c = 0; c < dh; ++c) o[c] += pk * vr[c];
          }
        }
      }
    }
  });
}

template <class T>
void attention_backward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh,
                        T scale, const int64_t* lengths, const T* qkv, const T* probs,
                        const T* dout, T* ds, T* dqkv) {
  detail::check_lengths("attention_backward", B, lengths, L, "L");
  const int64_t d = heads * dh, ld = 3 * d;
  LOCKSTEP_SLOT_VECTORS(T, vt_slots, 3 * dh * L);  // each thread's transposed V, dK, dV blocks
  parallel_for(ctx, B, grain_for(3 * heads * L * L * dh), [&](int64_t b0, int64_t b1) {
    T* vt = vt_slots[pool_slot()].data();
    T* gkt = vt + dh * L;  // dK and dV of the head, transposed like vt
    T* gvt = gkt + dh * L;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = lengths[b];
      const T* rows = qkv + b * L * ld;
      T* grows = dqkv + b * L * ld;
      std::fill_n(grows, L * ld, T(0));
      for (int64_t i = 0; i < heads; ++i) {
        const int64_t off_q = i * dh, off_k = d + i * dh, off_v = 2 * d + i * dh;
        transpose_head(rows + off_v, ld, len, dh, L, vt);
        std::fill_n(gkt, 2 * dh * L, T(0));
        for (int64_t q = 0; q < L; ++q) {
          const T* p = probs + ((b * heads + i) * L + q) * L;
          T* g = ds + ((b * heads + i) * L + q) * L;
          const T* go = dout + (b * L + q) * d + i * dh;
          std::fill_n(g, L, T(0));
          // dP[k] = dO[q]·V[k], Σ_c in c order, the keys side by side.
          for (int64_t c = 0; c < dh; ++c) {
            const T goc = go[c];
            const T* vc = vt + c * L;
            for (int64_t k = 0; k < len; ++k) g[k] += goc * vc[k];
          }
          // dS = P ⊙ (dP − Σ P·dP) over the entries P covers (P == 0: masked or underflowed).
          double dot = 0.0;
          for (int64_t k = 0; k < len; ++k)
            if (p[k] != T(0)) dot += static_cast<double>(p[k]) * static_cast<double>(g[k]);
          const T s = static_cast<T>(dot);
          for (int64_t k = 0; k < len; ++k) g[k] = p[k] != T(0) ? p[k] * (g[k] - s) : T(0);
          // dQ[q] = scale · Σ_k dS[q,k] K[k] (k order);
          T* gq = grows + q * ld + off_q;
          for (int64_t k = 0; k < len; ++k) {
            const T gk = g[k];
            const T* kr = rows + k * ld + off_k;
            for (int64_t c = 0; c < dh; ++c) gq[c] += gk * kr[c];
          }
          for (int64_t c = 0; c < dh; ++c) gq[c] *= scale;
          // dK[k] += dS[q,k] Q[q], dV[k] += P[q,k] dO[q] (q order), the keys side by side.
          const T* qr = rows + q * ld + off_q;
          for (int64_t c = 0; c < dh; ++c) {
            const T qc = qr[c], goc = go[c];
            T* gkc = gkt + c * L;
            T* gvc = gvt + c * L;
            for (int64_t k = 0; k < len; ++k) {
              gkc[k] += g[k] * qc;
              gvc[k] += p[k] * goc;
            }
          }
        }
        for (int64_t k = 0; k < len; ++k)
          for (int64_t c = 0; c < dh; ++c) {
            grows[k * ld + off_k + c] = gkt[c * L + k] * scale;
            grows[k * ld + off_v + c] = gvt[c * L + k];
          }
      }
    }
  });
}

#define LOCKSTEP_INSTANTIATE(T)                                                              \
  template void attention_forward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, T,  \
                                     const int64_t*, const T*, T*, T*);                      \
  template void attention_backward<T>(const Context&, int64_t, int64_t, int64_t, int64_t, T, \
                                      const int64_t*, const T*, const T*, const T*, T*, T*);
LOCKSTEP_INSTANTIATE(float)
LOCKSTEP_INSTANTIATE(double)
#undef LOCKSTEP_INSTANTIATE

}  // namespace lockstep::kernels::cpu

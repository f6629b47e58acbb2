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

/// dst[c · L + k] = src[k · ld + c] for k < rows, c < dh: a head's rows transposed, so that loops
/// over positions run over contiguous memory.
template <class T>
void transpose_head(const T* src, int64_t ld, int64_t rows, int64_t dh, int64_t L, T* dst) {
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t c = 0; c < dh; ++c) dst[c * L + k] = src[k * ld + c];
}

/// The other way, scaled: dst[k · ld + c] = src[c · L + k] · factor (exact for factor 1).
template <class T>
void untranspose_head(const T* src, int64_t rows, int64_t dh, int64_t L, T factor, T* dst,
                      int64_t ld) {
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t c = 0; c < dh; ++c) dst[k * ld + c] = src[c * L + k] * factor;
}

/// dst[q · L + k] = src[k · L + q] for k < len, 0 for len <= k < L, every q < L: an L × L block
/// held key-major written query-major (probs' layout), zero past the valid keys.
template <class T>
void store_query_major(const T* src, int64_t len, int64_t L, T* dst) {
  for (int64_t q = 0; q < L; ++q) {
    T* row = dst + q * L;
    for (int64_t k = 0; k < len; ++k) row[k] = src[k * L + q];
    std::fill(row + len, row + L, T(0));
  }
}

/// accᵀ[c, q] += Σ_k w[k · L + q] · head[k · ld + c] over k < len in increasing order, c < dh,
/// q < L: a key-major weight block (Pᵀ, dSᵀ) times a head's rows (V, K), the queries innermost.
template <class T>
void add_weighted_rows(const T* w, const T* head, int64_t ld, int64_t len, int64_t dh, int64_t L,
                       T* acc) {
  for (int64_t k = 0; k < len; ++k) {
    const T* wk = w + k * L;
    const T* hr = head + k * ld;
    for (int64_t c = 0; c < dh; ++c) {
      const T hc = hr[c];
      T* ac = acc + c * L;
      for (int64_t q = 0; q < L; ++q) ac[q] += wk[q] * hc;
    }
  }
}

}  // namespace

// A whole head at a time, its matrices transposed (position-major → column-major) so that the
// innermost loops run over the L queries (21 at bst-bench's shapes) instead of the dh = 4
// columns of a head; each sum keeps the header's order (and the bits of the per-query loops
// this replaced).
template <class T>
void attention_forward(const Context& ctx, int64_t B, int64_t L, int64_t heads, int64_t dh, T scale,
                       const int64_t* lengths, const T* qkv, T* probs, T* out) {
  detail::check_lengths("attention_forward", B, lengths, L, "L");
  const int64_t d = heads * dh, ld = 3 * d;
  // Each thread's Qᵀ and Oᵀ (dh × L), Sᵀ (L × L: row k holds the scores of key k for every
  // query, then the probabilities) and the per-query maxima, then inverses.
  LOCKSTEP_SLOT_VECTORS(T, t_slots, 2 * dh * L + L * L + L);
  LOCKSTEP_SLOT_VECTORS(double, sum_slots, L);
  parallel_for(ctx, B, grain_for(heads * L * L * dh), [&](int64_t b0, int64_t b1) {
    T* qt = t_slots[pool_slot()].data();
    T* ot = qt + dh * L;
    T* st = ot + dh * L;
    T* mx = st + L * L;
    double* sum = sum_slots[pool_slot()].data();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = lengths[b];
      const T* rows = qkv + b * L * ld;
      for (int64_t i = 0; i < heads; ++i) {
        T* p_head = probs + (b * heads + i) * L * L;
        T* o_head = out + b * L * d + i * dh;
        std::fill_n(ot, dh * L, T(0));
        // Scores: Sᵀ[k, q] = Σ_c Q[q, c] K[k, c], c in order, then scaled; the row maxima.
        transpose_head(rows + i * dh, ld, L, dh, L, qt);
        for (int64_t k = 0; k < len; ++k) {
          T* s = st + k * L;
          std::fill_n(s, L, T(0));
          const T* kr = rows + k * ld + d + i * dh;
          for (int64_t c = 0; c < dh; ++c) {
            const T kc = kr[c];
            const T* qc = qt + c * L;
            for (int64_t q = 0; q < L; ++q) s[q] += qc[q] * kc;
          }
          for (int64_t q = 0; q < L; ++q) s[q] *= scale;
        }
        if (len > 0) std::copy_n(st, L, mx);
        for (int64_t k = 0; k < len; ++k)
          for (int64_t q = 0; q < L; ++q) mx[q] = std::max(mx[q], st[k * L + q]);
        // Softmax over k for every query: exp(s − max), normalised by the double sum in k order
        // (>= 1: the max contributes exp(0)).
        std::fill_n(sum, L, 0.0);
        for (int64_t k = 0; k < len; ++k) {
          T* s = st + k * L;
          for (int64_t q = 0; q < L; ++q) {
            s[q] = std::exp(s[q] - mx[q]);
            sum[q] += static_cast<double>(s[q]);
          }
        }
        for (int64_t q = 0; q < L && len > 0; ++q) mx[q] = static_cast<T>(1.0 / sum[q]);
        for (int64_t k = 0; k < len; ++k)
          for (int64_t q = 0; q < L; ++q) st[k * L + q] *= mx[q];
        store_query_major(st, len, L, p_head);
        // Oᵀ[c, q] = Σ_k P[q, k] V[k, c], k in order.
        add_weighted_rows(st, rows + 2 * d + i * dh, ld, len, dh, L, ot);
        untranspose_head(ot, L, dh, L, T(1), o_head, d);
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
  // Each thread's dOᵀ, dQᵀ, dKᵀ, dVᵀ (dh × L each), Pᵀ and dPᵀ then dSᵀ (L × L each: row k for
  // every query) and the per-query Σ P·dP.
  LOCKSTEP_SLOT_VECTORS(T, t_slots, 4 * dh * L + 2 * L * L + L);
  LOCKSTEP_SLOT_VECTORS(double, dot_slots, L);
  parallel_for(ctx, B, grain_for(3 * heads * L * L * dh), [&](int64_t b0, int64_t b1) {
    T* got = t_slots[pool_slot()].data();
    T* gqt = got + dh * L;
    T* gkt = gqt + dh * L;
    T* gvt = gkt + dh * L;
    T* pt = gvt + dh * L;
    T* gst = pt + L * L;
    T* sd = gst + L * L;
    double* dot = dot_slots[pool_slot()].data();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = lengths[b];
      const T* rows = qkv + b * L * ld;
      T* grows = dqkv + b * L * ld;
      std::fill_n(grows, L * ld, T(0));
      for (int64_t i = 0; i < heads; ++i) {
        const int64_t off_q = i * dh, off_k = d + i * dh, off_v = 2 * d + i * dh;
        const T* p_head = probs + (b * heads + i) * L * L;
        T* g_head = ds + (b * heads + i) * L * L;
        std::fill_n(gqt, 3 * dh * L, T(0));
        transpose_head(dout + b * L * d + i * dh, d, L, dh, L, got);
        // dPᵀ[k, q] = Σ_c dO[q, c] V[k, c], c in order; Pᵀ; Σ_k P·dP over the entries P covers
        // (P == 0: masked or underflowed), k in order, in double.
        std::fill_n(dot, L, 0.0);
        for (int64_t k = 0; k < len; ++k) {
          T* g = gst + k * L;
          T* p = pt + k * L;
          std::fill_n(g, L, T(0));
          const T* vr = rows + k * ld + off_v;
          for (int64_t c = 0; c < dh; ++c) {
            const T vc = vr[c];
            const T* goc = got + c * L;
            for (int64_t q = 0; q < L; ++q) g[q] += goc[q] * vc;
          }
          for (int64_t q = 0; q < L; ++q) {
            p[q] = p_head[q * L + k];
            if (p[q] != T(0)) dot[q] += static_cast<double>(p[q]) * static_cast<double>(g[q]);
          }
        }
        // dS = P ⊙ (dP − Σ P·dP), written to ds in probs' layout.
        for (int64_t q = 0; q < L; ++q) sd[q] = static_cast<T>(dot[q]);
        for (int64_t k = 0; k < len; ++k) {
          T* g = gst + k * L;
          const T* p = pt + k * L;
          for (int64_t q = 0; q < L; ++q) g[q] = p[q] != T(0) ? p[q] * (g[q] - sd[q]) : T(0);
        }
        store_query_major(gst, len, L, g_head);
        // dQᵀ[c, q] = scale · Σ_k dS[q, k] K[k, c], k in order.
        add_weighted_rows(gst, rows + off_k, ld, len, dh, L, gqt);
        untranspose_head(gqt, L, dh, L, scale, grows + off_q, ld);
        // dKᵀ[c, k] += dS[q, k] Q[q, c], dVᵀ[c, k] += P[q, k] dO[q, c] (q in order), the keys
        // side by side.
        for (int64_t q = 0; q < L; ++q) {
          const T* g = g_head + q * L;
          const T* p = p_head + q * L;
          const T* qr = rows + q * ld + off_q;
          for (int64_t c = 0; c < dh; ++c) {
            const T qc = qr[c], goc = got[c * L + q];
            T* gkc = gkt + c * L;
            T* gvc = gvt + c * L;
            for (int64_t k = 0; k < len; ++k) {
              gkc[k] += g[k] * qc;
              gvc[k] += p[k] * goc;
            }
          }
        }
        untranspose_head(gkt, len, dh, L, scale, grows + off_k, ld);
        untranspose_head(gvt, len, dh, L, T(1), grows + off_v, ld);
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

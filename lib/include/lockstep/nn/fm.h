#pragma once
// FM bi-interaction (He & Chua, NFM 2017): the second-order FM term as a vector, before the
// final sum over the embedding dimension.

#include <cstdint>

#include "lockstep/core/context.h"

namespace lockstep::nn {

/// out[b, d] = 0.5 · ((Σ_f v[b, f, d])² − Σ_f v[b, f, d]²) over F fields of width D. No
/// parameters. Summing out over d gives the FM second-order term.
template <class T>
class FmInteraction {
 public:
  FmInteraction(int64_t fields, int64_t dim);

  int64_t fields() const { return F_; }
  int64_t dim() const { return D_; }
  int64_t output_width() const { return D_; }

  /// v: (B, F·D) row stride ldv — field f of sample b at v + b·ldv + f·D; kept until
  /// backward(). out: (B, D) row stride ldo (overwritten).
  void forward(const Context& ctx, int64_t B, const T* v, int64_t ldv, T* out, int64_t ldo);
  /// dout: (B, D) row stride lddo. ACCUMULATES dv (+=, row stride lddv).
  void backward(const Context& ctx, const T* dout, int64_t lddo, T* dv, int64_t lddv) const;

 private:
  int64_t F_, D_;
  int64_t B_ = 0, ldv_ = 0;
  const T* v_ = nullptr;
};

extern template class FmInteraction<float>;
extern template class FmInteraction<double>;

}  // namespace lockstep::nn

#include "lockstep/nn/fm.h"

#include "kernels/interaction.h"

namespace lockstep::nn {

template <class T>
FmInteraction<T>::FmInteraction(int64_t fields, int64_t dim) : F_(fields), D_(dim) {
  check_range("fm.fields", fields, int64_t{1}, int64_t{1} << 20);
  check_range("fm.dim", dim, int64_t{1}, int64_t{1} << 20);
}

template <class T>
void FmInteraction<T>::forward(const Context& ctx, int64_t B, const T* v, int64_t ldv, T* out,
                               int64_t ldo) {
  B_ = B;
  v_ = v;
  ldv_ = ldv;
  kernels::fm_forward<T>(ctx, B, F_, D_, v, ldv, out, ldo);
}

template <class T>
void FmInteraction<T>::backward(const Context& ctx, const T* dout, int64_t lddo, T* dv,
                                int64_t lddv) const {
  kernels::fm_backward<T>(ctx, B_, F_, D_, v_, ldv_, dout, lddo, dv, lddv);
}

template class FmInteraction<float>;
template class FmInteraction<double>;

}  // namespace lockstep::nn

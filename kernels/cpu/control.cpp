#include "kernels/control.h"

namespace lockstep::kernels::cpu {

template <class T>
void encode_count_chunks(const Context&, const int64_t* value, T* chunks) {
  const uint64_t v = value[0] < 0 ? 0 : static_cast<uint64_t>(value[0]);
  for (int c = 0; c < 4; ++c) chunks[c] = static_cast<T>((v >> (16 * c)) & 0xffffu);
}

template void encode_count_chunks<float>(const Context&, const int64_t*, float*);
template void encode_count_chunks<double>(const Context&, const int64_t*, double*);

}  // namespace lockstep::kernels::cpu

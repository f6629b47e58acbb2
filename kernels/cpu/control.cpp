#include "kernels/control.h"

namespace lockstep::kernels::cpu {

template <class T>
void encode_count_chunks(const Context&, const int64_t* value, T* chunks) {
  const uint64_t v = value[0] < 0 ? 0 : static_cast<uint64_t>(value[0]);
  for (int c = 0; c < 4; ++c) chunks[c] = static_cast<T>((v >> (16 * c)) & 0xffffu);
}

// CPU kernels throw at once: there is never an unreported device error to flag.
template <class T>
void flag_device_error(const Context&, T, T*) {}

template <class T>
void write_u64(const Context&, uint64_t value, uint64_t* out) {
  *out = value;
}

template void encode_count_chunks<float>(const Context&, const int64_t*, float*);
template void encode_count_chunks<double>(const Context&, const int64_t*, double*);
template void flag_device_error<float>(const Context&, float, float*);
template void flag_device_error<double>(const Context&, double, double*);
template void write_u64<float>(const Context&, uint64_t, uint64_t*);
template void write_u64<double>(const Context&, uint64_t, uint64_t*);

}  // namespace lockstep::kernels::cpu

// CPU reference of the key → row hashing (kernels/key_hash.h).

#include "kernels/key_hash.h"

#include "kernels/cpu/parallel.h"

namespace lockstep::kernels::cpu {

template <class T>
void hash_keys_to_rows(const Context& ctx, int64_t n, uint64_t seed, int64_t rows, uint64_t* ids) {
  const auto r = static_cast<uint64_t>(rows);
  parallel_for(ctx, n, grain_for(8), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) ids[i] = xxh64_of_key(ids[i], seed) % r;
  });
}

template void hash_keys_to_rows<float>(const Context&, int64_t, uint64_t, int64_t, uint64_t*);
template void hash_keys_to_rows<double>(const Context&, int64_t, uint64_t, int64_t, uint64_t*);

}  // namespace lockstep::kernels::cpu

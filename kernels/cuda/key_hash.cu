// CUDA key → row hashing (kernels/key_hash.h): one thread per key, grid-stride, in place.

#include "kernels/cuda/launch.cuh"
#include "kernels/key_hash.h"

namespace lockstep::kernels::cuda {

namespace {

__global__ void hash_keys_to_rows_kernel(int64_t n, uint64_t seed, uint64_t rows,
                                         uint64_t* __restrict__ ids) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    ids[i] = xxh64_of_key(ids[i], seed) % rows;
}

}  // namespace

void hash_keys_to_rows(const Context& ctx, int64_t n, uint64_t seed, int64_t rows, uint64_t* ids) {
  if (n == 0) return;
  hash_keys_to_rows_kernel<<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(
      n, seed, static_cast<uint64_t>(rows), ids);
  LOCKSTEP_KERNEL_CHECK(ctx, "hash_keys_to_rows");
}

}  // namespace lockstep::kernels::cuda

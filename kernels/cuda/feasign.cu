// A dynamic table's row work (kernels/feasign.h): one thread per element or per sample, the
// CPU reference's arithmetic in its order. An index out of range (none is expected: the host
// computes every index from its own key index) is skipped and recorded in the context's device
// error record (kernels/cuda/input_errors.cuh), which the host reports with the CPU's message.
#include "kernels/cuda/input_errors.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/feasign.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::kernels::cuda {

namespace {
__global__ void gather_rows_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                   const float* __restrict__ src, int64_t ld_src, int64_t src_rows,
                                   const int64_t* __restrict__ index, float* __restrict__ dst,
                                   int64_t ld_dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, d = e % dim, r = index[i];
    if (r >= src_rows && d == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, r, src_rows,
                         static_cast<int64_t>(RowArray::Index));
    dst[i * ld_dst + d] = r >= 0 && r < src_rows ? src[r * ld_src + d] : 0.0f;
  }
}

__global__ void fill_rows_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                 const int64_t* __restrict__ index, float value,
                                 float* __restrict__ dst, int64_t ld, int64_t dst_rows) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, r = index[i];
    if (r >= 0 && r < dst_rows)
      dst[r * ld + e % dim] = value;
    else if (e % dim == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, r, dst_rows,
                         static_cast<int64_t>(RowArray::Index));
  }
}

__global__ void feasign_init_kernel(ErrorSink sink, int64_t n, int64_t dim,
                                    const uint64_t* __restrict__ keys,
                                    const int64_t* __restrict__ slots, uint64_t seed,
                                    uint64_t stream, float scale, float* __restrict__ embedx,
                                    int64_t rows) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / dim, d = e % dim, s = slots[i];
    if (s >= 0 && s < rows)
      embedx[s * dim + d] = embedding::feasign_init_value(seed, stream, keys[i], d, scale);
    else if (d == 0)
      record_input_error(sink, InputError::RowOutOfRange, i, i, s, rows,
                         static_cast<int64_t>(RowArray::Slots));
  }
}

__global__ void wide_forward_kernel(ErrorSink sink, int64_t batch, int64_t per_sample,
                                    const int64_t* __restrict__ offsets,
                                    const uint64_t* __restrict__ ids, const float* __restrict__ lr,
                                    int64_t lr_rows, float* __restrict__ out) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < batch;
       b += int64_t(gridDim.x) * blockDim.x) {
    float acc = out[b];
    for (int64_t i = b * per_sample; i < (b + 1) * per_sample; ++i)
      for (int64_t j = offsets[i]; j < offsets[i + 1]; ++j) {
        if (ids[j] < static_cast<uint64_t>(lr_rows))
          acc += lr[ids[j]];
        else
          record_input_error(sink, InputError::IdOutOfRange, j, j, static_cast<int64_t>(ids[j]), b,
                             lr_rows);
      }
    out[b] = acc;
  }
}

__global__ void repeat_each_kernel(int64_t n, int64_t repeat, const float* __restrict__ src,
                                   float* __restrict__ dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * repeat;
       e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = src[e / repeat];
}
}  // namespace

void gather_rows(const Context& ctx, int64_t n, int64_t dim, const float* src, int64_t ld_src,
                 int64_t src_rows, const int64_t* index, float* dst, int64_t ld_dst) {
  gather_rows_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "gather_rows"), n, dim, src, ld_src, src_rows, index, dst, ld_dst);
  LOCKSTEP_KERNEL_CHECK(ctx, "gather_rows");
}

void fill_rows(const Context& ctx, int64_t n, int64_t dim, const int64_t* index, float value,
               float* dst, int64_t ld, int64_t dst_rows) {
  fill_rows_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "fill_rows"), n, dim, index, value, dst, ld, dst_rows);
  LOCKSTEP_KERNEL_CHECK(ctx, "fill_rows");
}

void feasign_init_rows(const Context& ctx, int64_t n, int64_t dim, const uint64_t* keys,
                       const int64_t* slots, uint64_t seed, uint64_t stream, float scale,
                       float* embedx, int64_t rows) {
  feasign_init_kernel<<<grid_for(n * dim), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "feasign_init_rows"), n, dim, keys, slots, seed, stream, scale, embedx, rows);
  LOCKSTEP_KERNEL_CHECK(ctx, "feasign_init_rows");
}

void wide_lookup_forward(const Context& ctx, int64_t batch, int64_t per_sample,
                         const int64_t* offsets, const uint64_t* ids, const float* lr,
                         int64_t lr_rows, float* out) {
  wide_forward_kernel<<<grid_for(batch), kBlock, 0, stream_of(ctx)>>>(
      error_sink(ctx, "wide_lookup_forward"), batch, per_sample, offsets, ids, lr, lr_rows, out);
  LOCKSTEP_KERNEL_CHECK(ctx, "wide_lookup_forward");
}

void repeat_each(const Context& ctx, int64_t n, int64_t repeat, const float* src, float* dst) {
  repeat_each_kernel<<<grid_for(n * repeat), kBlock, 0, stream_of(ctx)>>>(n, repeat, src, dst);
  LOCKSTEP_KERNEL_CHECK(ctx, "repeat_each");
}

}  // namespace lockstep::kernels::cuda

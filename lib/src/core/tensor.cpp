#include "lockstep/core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "lockstep/config.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    LOCKSTEP_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

Buffer::Buffer(const Context& ctx, size_t bytes) : bytes_(bytes), device_(ctx.device()) {
  if (bytes == 0) return;
  ctx.count_allocation();
  if (device_.is_cpu()) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    ptr_ = std::aligned_alloc(64, rounded);
    LOCKSTEP_CHECK(ptr_ != nullptr, "out of host memory allocating {} bytes", bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  stream_ = ctx.stream();
  const cudaError_t err = cudaMallocAsync(&ptr_, bytes, static_cast<cudaStream_t>(stream_));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(fmt::format("out of GPU memory on {} allocating {:.1f} MiB ({})", device_.str(),
                            bytes / 1048576.0, cudaGetErrorString(err)));
  }
#endif
}

void Buffer::release() noexcept {
  if (!ptr_) return;
  if (device_.is_cpu()) {
    std::free(ptr_);
  } else {
#if LOCKSTEP_CUDA_ENABLED
    cudaFreeAsync(ptr_, static_cast<cudaStream_t>(stream_));
#endif
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept
    : ptr_(o.ptr_), bytes_(o.bytes_), device_(o.device_), stream_(o.stream_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    stream_ = o.stream_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void copy_bytes(const Context& ctx, void* dst, const Device& dst_dev, const void* src,
                const Device& src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  auto stream = detail::stream_of(ctx);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  if (dst_dev.is_cpu() || src_dev.is_cpu()) LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
#else
  throw Error("copy_bytes: a CUDA device was named but this build has no CUDA support");
#endif
}

void zero_bytes(const Context& ctx, void* dst, size_t bytes) {
  if (bytes == 0) return;
  if (ctx.is_cpu()) {
    std::memset(dst, 0, bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, detail::stream_of(ctx)));
#endif
}

}  // namespace lockstep

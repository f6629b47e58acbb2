#include "lockstep/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/buffer_frees.h"
#include "lockstep/config.h"
#include "lockstep/core/launch_recorder.h"

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
  // The stream-ordered allocation would become part of the graph being captured.
  LOCKSTEP_CHECK(
      ctx.recorder() == nullptr || ctx.recorder()->mode() != LaunchRecorder::Mode::Capture,
      "allocating {} bytes on {} while a CUDA graph is captured", bytes, device_.str());
  stream_ = ctx.stream();
  const cudaError_t err = cudaMallocAsync(&ptr_, bytes, static_cast<cudaStream_t>(stream_));
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw Error(fmt::format("out of GPU memory on {} allocating {:.1f} MiB ({})", device_.str(),
                            bytes / 1048576.0, cudaGetErrorString(err)));
  }
  // Anything else is not a lack of memory: often an earlier kernel's sticky fault surfacing
  // here, which must stay a DeviceError (the rank is lost), not become a plain error.
  if (err != cudaSuccess) detail::throw_cuda_error(err, "cudaMallocAsync", __FILE__, __LINE__);
#endif
}

namespace {
thread_local uint64_t t_buffer_frees = 0;
#if LOCKSTEP_CUDA_ENABLED
struct DeferredFree {
  void* ptr;
  cudaStream_t stream;
};
thread_local std::vector<DeferredFree> t_deferred_frees;

void free_on_stream(void* ptr, cudaStream_t stream) noexcept {
  // An error here is the stream's (a lost device): the memory goes with it. Not left as the
  // thread's last error, which the next kernel launch check would report as its own.
  if (cudaFreeAsync(ptr, stream) != cudaSuccess) (void)cudaGetLastError();
}
#endif
}  // namespace

namespace detail {
uint64_t buffer_frees() { return t_buffer_frees; }

void free_deferred_buffers() noexcept {
#if LOCKSTEP_CUDA_ENABLED
  for (const DeferredFree& f : t_deferred_frees) free_on_stream(f.ptr, f.stream);
  t_deferred_frees.clear();
#endif
}
}  // namespace detail

void Buffer::release() noexcept {
  if (!ptr_) return;
  ++t_buffer_frees;
  if (device_.is_cpu()) {
    std::free(ptr_);
  } else {
#if LOCKSTEP_CUDA_ENABLED
    const auto stream = static_cast<cudaStream_t>(stream_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) (void)cudaGetLastError();
    if (capture == cudaStreamCaptureStatusNone) {
      free_on_stream(ptr_, stream);
    } else {
      try {
        t_deferred_frees.push_back({ptr_, stream});
      } catch (...) {  // no memory for the list: the buffer is lost rather than freed per replay
      }
    }
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

namespace {
void copy_bytes_now(const Context& ctx, void* dst, const Device& dst_dev, const void* src,
                    const Device& src_dev, size_t bytes);
}  // namespace

void copy_bytes(const Context& ctx, void* dst, const Device& dst_dev, const void* src,
                const Device& src_dev, size_t bytes) {
  if (bytes == 0) return;
  LaunchRecorder* const recorder = ctx.recorder();
  if (recorder == nullptr) return copy_bytes_now(ctx, dst, dst_dev, src, src_dev, bytes);
  // A copy from or to host memory reads or writes it when the graph runs, not now.
  if (ctx.is_cuda() && (dst_dev.is_cpu() || src_dev.is_cpu()))
    recorder->mark_uncapturable("a copy between host and device memory");
  uint64_t key =
      LaunchRecorder::mix(reinterpret_cast<uintptr_t>(dst), reinterpret_cast<uintptr_t>(src));
  key = LaunchRecorder::mix(key, bytes);
  recorder->launch_work(ctx.is_cpu(), "copy", key, [&ctx, dst, dst_dev, src, src_dev, bytes] {
    copy_bytes_now(ctx, dst, dst_dev, src, src_dev, bytes);
  });
}

namespace {
void copy_bytes_now(const Context& ctx, void* dst, const Device& dst_dev, const void* src,
                    const Device& src_dev, size_t bytes) {
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  auto stream = detail::stream_of(ctx);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  if (dst_dev.is_cpu() || src_dev.is_cpu()) {
    ctx.count_stream_wait();
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
#else
  throw Error("copy_bytes: a CUDA device was named but this build has no CUDA support");
#endif
}
}  // namespace

void zero_bytes(const Context& ctx, void* dst, size_t bytes) { fill_bytes(ctx, dst, 0, bytes); }

void fill_bytes(const Context& ctx, void* dst, unsigned char value, size_t bytes) {
  if (bytes == 0) return;
  const auto fill = [&ctx, dst, value, bytes] {
    if (ctx.is_cpu()) {
      std::memset(dst, value, bytes);
      return;
    }
#if LOCKSTEP_CUDA_ENABLED
    LOCKSTEP_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, detail::stream_of(ctx)));
#endif
  };
  LaunchRecorder* const recorder = ctx.recorder();
  if (recorder == nullptr) return fill();
  recorder->launch_work(ctx.is_cpu(), "fill_bytes",
                        LaunchRecorder::mix(reinterpret_cast<uintptr_t>(dst),
                                            (bytes ^ 0x2e70) + (size_t{value} << 56)),
                        fill);
}

}  // namespace lockstep

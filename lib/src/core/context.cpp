#include "lockstep/core/context.h"

#include <cblas.h>

#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/core/tensor.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep {

struct Context::Impl {
  Device device;
  ContextOptions options;
  void* stream = nullptr;
  void* cublas = nullptr;
  Buffer workspace;  // declared after stream: destroyed first, while the stream still exists
  uint64_t random_offset = 0;
  uint64_t host_reads = 0;

  ~Impl() {
#if LOCKSTEP_CUDA_ENABLED
    workspace = Buffer();
    if (cublas) cublasDestroy(static_cast<cublasHandle_t>(cublas));
    if (stream) {
      cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
      cudaStreamDestroy(static_cast<cudaStream_t>(stream));
    }
#endif
  }
};

Context::Context() : Context(Device::cpu()) {}

Context::Context(Device device, ContextOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  impl_->options = options;
  if (options.cpu_threads > 0) openblas_set_num_threads(options.cpu_threads);
  if (device.is_cpu()) return;
#if LOCKSTEP_CUDA_ENABLED
  const int count = cuda_device_count();
  LOCKSTEP_CHECK(device.index >= 0 && device.index < count,
                 "cannot create a context on {}: {} CUDA device(s) visible", device.str(), count);
  LOCKSTEP_CUDA_CHECK(cudaSetDevice(device.index));
  cudaStream_t stream = nullptr;
  LOCKSTEP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  impl_->stream = stream;
  cublasHandle_t handle = nullptr;
  LOCKSTEP_CUBLAS_CHECK(cublasCreate(&handle));
  impl_->cublas = handle;
  LOCKSTEP_CUBLAS_CHECK(cublasSetStream(handle, stream));
  LOCKSTEP_CUBLAS_CHECK(cublasSetMathMode(
      handle, options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
#else
  throw Error(
      fmt::format("cannot create a context on {}: this build of lockstep has no CUDA "
                  "support (rebuild with -DLOCKSTEP_WITH_CUDA=ON)",
                  device.str()));
#endif
}

Context::~Context() = default;
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;

const Device& Context::device() const { return impl_->device; }
const ContextOptions& Context::options() const { return impl_->options; }
void* Context::stream() const { return impl_->stream; }
void* Context::cublas() const { return impl_->cublas; }

void* Context::workspace(size_t bytes) const {
  if (bytes > impl_->workspace.bytes()) {
    // Grow by at least 1.5x so that slowly growing requests do not reallocate every step.
    const size_t grown = std::max(bytes, impl_->workspace.bytes() + impl_->workspace.bytes() / 2);
    impl_->workspace = Buffer(*this, grown);
  }
  return impl_->workspace.data();
}

void Context::synchronize() const {
#if LOCKSTEP_CUDA_ENABLED
  if (impl_->stream)
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(impl_->stream)));
#endif
}

uint64_t Context::random_seed() const { return impl_->options.seed; }
uint64_t Context::random_offset() const { return impl_->random_offset; }
void Context::set_random_offset(uint64_t offset) { impl_->random_offset = offset; }
uint64_t Context::reserve_random(uint64_t n) const {
  const uint64_t first = impl_->random_offset;
  impl_->random_offset += n;
  return first;
}

uint64_t Context::host_reads() const { return impl_->host_reads; }
void Context::count_host_read() const { ++impl_->host_reads; }

}  // namespace lockstep

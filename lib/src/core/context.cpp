#include "lockstep/core/context.h"

#include <cblas.h>

#include <atomic>
#include <cstring>

#include "kernels/control.h"
#include "lockstep/config.h"
#include "lockstep/core/device_error.h"
#include "lockstep/core/error.h"
#include "lockstep/core/launch_recorder.h"
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
  Buffer workspace;     // declared after stream: destroyed first, while the stream still exists
  Buffer reduce_scratch;    // the column reductions' partial sums (CUDA)
  Buffer cublas_workspace;  // cuBLAS's, set on the handle (CUDA only)
  Buffer device_error;  // one DeviceErrorRecord (CUDA only)
  DeviceErrorRecord* host_error = nullptr;  // its page-locked host mirror (CUDA only)
  uint64_t launches = 0;                    // ids handed out by next_launch_id()
  uint64_t random_offset = 0;
  Buffer random_base;              // reserve_random_counters()'s base (allocated at first sync)
  uint64_t random_base_value = 0;  // what it holds once the stream has run what is enqueued
  uint64_t host_reads = 0;
  uint64_t stream_waits = 0;
  void* event = nullptr;  // wait_for()'s, on another context's stream (CUDA only)
  std::atomic<uint64_t> allocations{0};

  // After the stream has finished its copy of the record into host_error: when a kernel
  // recorded an error, resets the record (in stream order, no wait) and throws its message.
  void report_device_error(const Context& ctx) {
#if LOCKSTEP_CUDA_ENABLED
    if (host_error->code == 0) return;
    const DeviceErrorRecord record = *host_error;
    std::memset(host_error, 0, sizeof(DeviceErrorRecord));
    LOCKSTEP_CUDA_CHECK(
        cudaMemsetAsync(device_error.data(), 0, sizeof(DeviceErrorRecord), detail::stream_of(ctx)));
    throw Error(detail::device_error_message(record));
#endif
  }

  ~Impl() {
#if LOCKSTEP_CUDA_ENABLED
    // The cuBLAS handle before its workspace, which must stay valid while the handle exists.
    if (cublas) cublasDestroy(static_cast<cublasHandle_t>(cublas));
    workspace = Buffer();
    reduce_scratch = Buffer();
    random_base = Buffer();
    device_error = Buffer();
    cublas_workspace = Buffer();
    if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
    if (stream) {
      cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
      cudaStreamDestroy(static_cast<cudaStream_t>(stream));
    }
    if (host_error) cudaFreeHost(host_error);
#endif
  }
};

Context::Context() : Context(Device::cpu()) {}

Context::Context(Device device, ContextOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  impl_->options = options;
  // The CPU kernels split GEMMs into fixed blocks on their own threads (kernels/cpu/parallel.h),
  // each block one single-threaded BLAS call: OpenBLAS's own threads would oversubscribe the
  // cores and make results depend on the thread count.
  openblas_set_num_threads(1);
  if (device.is_cpu()) return;
#if LOCKSTEP_CUDA_ENABLED
  const int count = cuda_device_count();
  LOCKSTEP_CHECK(device.index >= 0 && device.index < count,
                 "cannot create a context on {}: {} CUDA device(s) visible", device.str(), count);
  LOCKSTEP_CUDA_CHECK(cudaSetDevice(device.index));
  // Tensors come from the device's default stream-ordered pool (cudaMallocAsync). Its release
  // threshold is 0 by default: every synchronisation hands the freed memory back to the driver,
  // and the next step's allocations map it again. Keep it instead (the pool is the process's,
  // per device; memory other processes need is not ours to hold, but one training process per
  // GPU is the deployment lockstep is built for).
  cudaMemPool_t pool = nullptr;
  LOCKSTEP_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device.index));
  uint64_t keep = UINT64_MAX;
  LOCKSTEP_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  cudaStream_t stream = nullptr;
  LOCKSTEP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  impl_->stream = stream;
  cublasHandle_t handle = nullptr;
  LOCKSTEP_CUBLAS_CHECK(cublasCreate(&handle));
  impl_->cublas = handle;
  LOCKSTEP_CUBLAS_CHECK(cublasSetStream(handle, stream));
  LOCKSTEP_CUBLAS_CHECK(cublasSetMathMode(
      handle, options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // A workspace of its own for cuBLAS (32 MiB, what NVIDIA recommends for Hopper), so that a
  // GEMM captured into a CUDA graph uses it instead of memory cuBLAS allocates per capture.
  constexpr size_t kCublasWorkspace = size_t{32} << 20;
  impl_->cublas_workspace = Buffer(*this, kCublasWorkspace);
  LOCKSTEP_CUBLAS_CHECK(
      cublasSetWorkspace(handle, impl_->cublas_workspace.data(), kCublasWorkspace));
  impl_->device_error = Buffer(*this, sizeof(DeviceErrorRecord));
  LOCKSTEP_CUDA_CHECK(
      cudaMemsetAsync(impl_->device_error.data(), 0, sizeof(DeviceErrorRecord), stream));
  void* host_error = nullptr;
  LOCKSTEP_CUDA_CHECK(cudaMallocHost(&host_error, sizeof(DeviceErrorRecord)));
  impl_->host_error = static_cast<DeviceErrorRecord*>(host_error);
  std::memset(impl_->host_error, 0, sizeof(DeviceErrorRecord));
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

namespace {
// Grows by at least 1.5x so that slowly growing requests do not reallocate every step.
void* grown(const Context& ctx, Buffer& buffer, size_t bytes) {
  if (bytes > buffer.bytes())
    buffer = Buffer(ctx, std::max(bytes, buffer.bytes() + buffer.bytes() / 2));
  return buffer.data();
}
}  // namespace

void* Context::workspace(size_t bytes) const { return grown(*this, impl_->workspace, bytes); }
void* Context::reduce_scratch(size_t bytes) const {
  return grown(*this, impl_->reduce_scratch, bytes);
}

void Context::wait_for(const Context& other) const {
  if (recorder_) recorder_->mark_uncapturable("a wait for another context's stream");
  if (is_cpu() || &other == this) return;
  LOCKSTEP_CHECK(other.device() == device(), "wait_for: a context on {} cannot wait for one on {}",
                 device().str(), other.device().str());
#if LOCKSTEP_CUDA_ENABLED
  if (!impl_->event) {
    cudaEvent_t e = nullptr;
    LOCKSTEP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    impl_->event = e;
  }
  const auto event = static_cast<cudaEvent_t>(impl_->event);
  LOCKSTEP_CUDA_CHECK(cudaEventRecord(event, static_cast<cudaStream_t>(other.stream())));
  LOCKSTEP_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(impl_->stream), event, 0));
#endif
}

void Context::synchronize() const {
  if (recorder_) recorder_->mark_uncapturable("a wait for the stream on the host");
#if LOCKSTEP_CUDA_ENABLED
  if (impl_->stream) {
    count_stream_wait();
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(impl_->stream)));
  }
#endif
}

DeviceErrorRecord* Context::device_error() const {
  return static_cast<DeviceErrorRecord*>(impl_->device_error.data());
}

uint64_t Context::next_launch_id() const { return ++impl_->launches; }

void Context::check_device_errors() const {
  if (recorder_) recorder_->mark_uncapturable("a read of device memory on the host");
  if (is_cpu()) return;
#if LOCKSTEP_CUDA_ENABLED
  const cudaStream_t stream = detail::stream_of(*this);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(impl_->host_error, impl_->device_error.data(),
                                      sizeof(DeviceErrorRecord), cudaMemcpyDeviceToHost, stream));
  count_stream_wait();
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
  impl_->report_device_error(*this);
#endif
}

void Context::copy_to_host(void* dst, const void* src, size_t bytes) const {
  if (recorder_) recorder_->mark_uncapturable("a read of device memory on the host");
  if (is_cpu()) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  // The record and the data in one synchronisation: the step's one host read stays one. The
  // record (into pinned memory) goes first, so that a copy into pageable memory, which returns
  // only when it is done, leaves nothing for the final wait.
  const cudaStream_t stream = detail::stream_of(*this);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(impl_->host_error, impl_->device_error.data(),
                                      sizeof(DeviceErrorRecord), cudaMemcpyDeviceToHost, stream));
  if (bytes > 0) LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  count_stream_wait();
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream));
  impl_->report_device_error(*this);
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

Context::RandomCounters Context::reserve_random_counters(uint64_t n) const {
  const uint64_t first = reserve_random(n);
  const auto* base = static_cast<const uint64_t*>(impl_->random_base.data());
  // Modulo 2^64, as the kernel adds: also right after set_random_offset() moved backwards.
  return {base, base != nullptr ? first - impl_->random_base_value : first};
}

void Context::sync_random_base() const {
  LOCKSTEP_CHECK(recorder_ == nullptr, "sync_random_base: called inside a recorded region");
  if (impl_->random_base.data() != nullptr && impl_->random_base_value == impl_->random_offset)
    return;
  if (impl_->random_base.data() == nullptr) impl_->random_base = Buffer(*this, sizeof(uint64_t));
  kernels::write_u64<float>(*this, impl_->random_offset,
                            static_cast<uint64_t*>(impl_->random_base.data()));
  impl_->random_base_value = impl_->random_offset;
}

uint64_t Context::host_reads() const { return impl_->host_reads; }
void Context::count_host_read() const { ++impl_->host_reads; }
uint64_t Context::stream_waits() const { return impl_->stream_waits; }
void Context::count_stream_wait() const { ++impl_->stream_waits; }
uint64_t Context::allocations() const { return impl_->allocations.load(); }
void Context::count_allocation() const { impl_->allocations.fetch_add(1); }

}  // namespace lockstep

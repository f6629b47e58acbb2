#include "lockstep/core/pinned_buffer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/core/launch_recorder.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep {

PinnedBuffer::~PinnedBuffer() { release(); }

PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)),
      capacity_(std::exchange(o.capacity_, 0)),
      pinned_(o.pinned_),
      event_(std::exchange(o.event_, nullptr)),
      pending_(std::exchange(o.pending_, false)),
      copied_on_(std::exchange(o.copied_on_, nullptr)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    pinned_ = o.pinned_;
    event_ = std::exchange(o.event_, nullptr);
    pending_ = std::exchange(o.pending_, false);
    copied_on_ = std::exchange(o.copied_on_, nullptr);
  }
  return *this;
}

void PinnedBuffer::release() noexcept {
#if LOCKSTEP_CUDA_ENABLED
  if (event_) {
    if (pending_) cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (ptr_ && pinned_) cudaFreeHost(ptr_);
#endif
  if (ptr_ && !pinned_) std::free(ptr_);
  ptr_ = nullptr;
  capacity_ = 0;
  event_ = nullptr;
  pending_ = false;
}

void PinnedBuffer::wait() {
  if (!pending_) return;
#if LOCKSTEP_CUDA_ENABLED
  const auto event = static_cast<cudaEvent_t>(event_);
  const cudaError_t state = detail::query_event(event);
  if (state == cudaErrorNotReady) {  // a real wait, counted as one for the stream
    if (copied_on_ != nullptr) copied_on_->count_stream_wait();
    LOCKSTEP_CUDA_CHECK(cudaEventSynchronize(event));
  } else {
    LOCKSTEP_CUDA_CHECK(state);
  }
#endif
  pending_ = false;
}

void PinnedBuffer::reserve(const Context& ctx, size_t bytes) {
  wait();
  const bool pin = ctx.is_cuda();
  if (bytes <= capacity_ && ptr_ && pin == pinned_) return;
  // Grow by at least 1.5x so that slowly growing batches do not reallocate every step.
  const size_t grown = std::max(bytes, pin == pinned_ ? capacity_ + capacity_ / 2 : size_t{0});
  const size_t rounded = (std::max<size_t>(grown, 64) + 63) / 64 * 64;
  void* event = std::exchange(event_, nullptr);
  release();
  event_ = event;
  if (pin) {
#if LOCKSTEP_CUDA_ENABLED
    // The event first: if it fails, ptr_ is still empty (release() must never std::free pinned
    // memory, nor cudaFreeHost malloc'ed memory).
    if (!event_) {
      cudaEvent_t e = nullptr;
      LOCKSTEP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      event_ = e;
    }
    void* pinned = nullptr;
    LOCKSTEP_CUDA_CHECK(cudaMallocHost(&pinned, rounded));
    ptr_ = pinned;
#else
    throw Error("PinnedBuffer: a CUDA context was given but this build has no CUDA support");
#endif
  } else {
    ptr_ = std::aligned_alloc(64, rounded);
    LOCKSTEP_CHECK(ptr_ != nullptr, "out of host memory allocating {} bytes", rounded);
  }
  pinned_ = pin;
  capacity_ = rounded;
}

void PinnedBuffer::copy_to_device(const Context& ctx, void* dst, size_t bytes) {
  LOCKSTEP_CHECK(bytes <= capacity_, "PinnedBuffer: copying {} bytes out of a buffer of {}", bytes,
                 capacity_);
  if (bytes == 0) return;
  if (ctx.is_cpu()) {
    if (dst != ptr_) std::memcpy(dst, ptr_, bytes);
    return;
  }
#if LOCKSTEP_CUDA_ENABLED
  LOCKSTEP_CHECK(pinned_, "PinnedBuffer: reserve() it for the CUDA context before copying");
  // Not a launch the recorder sees: a graph would read the buffer when it runs, not now.
  if (LaunchRecorder* recorder = ctx.recorder()) {
    recorder->mark_uncapturable("a copy from a pinned host buffer");
    // Inside a capture nothing may be enqueued: the event below, recorded into the graph, could
    // never be waited for again (every later reserve() would fail). The capture fails and its
    // region runs again eagerly, where the copy is made.
    LOCKSTEP_CHECK(recorder->mode() != LaunchRecorder::Mode::Capture,
                   "a copy from a pinned host buffer cannot be captured into a CUDA graph");
  }
  const cudaStream_t stream = detail::stream_of(ctx);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dst, ptr_, bytes, cudaMemcpyHostToDevice, stream));
  LOCKSTEP_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream));
  pending_ = true;
  copied_on_ = &ctx;
#endif
}

}  // namespace lockstep

#pragma once
// PinnedBuffer: a reusable host staging area that a device can copy from asynchronously.

#include <cstddef>

#include "lockstep/core/context.h"

namespace lockstep {

/// Host memory for host -> device uploads: page-locked (cudaMallocHost) when reserved for a CUDA
/// context, so that copy_to_device() is truly asynchronous; plain 64-byte aligned memory for a
/// CPU context. Reused step after step (reserve() grows it, never shrinks it).
///
/// The contents may be rewritten only after the device has read them: copy_to_device() records
/// the copy on ctx's stream and wait() (called by reserve() too) blocks until that copy is done.
/// Move-only; the context used must outlive the buffer.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  /// Waits for the pending copy, then makes room for `bytes` (contents dropped when it grows, or
  /// when the buffer was reserved for another kind of context).
  void reserve(const Context& ctx, size_t bytes);
  void* data() const { return ptr_; }
  size_t capacity() const { return capacity_; }
  /// True when the memory is page-locked (reserved for a CUDA context).
  bool pinned() const { return pinned_; }

  /// Copies the first `bytes` to `dst` on ctx's device: one cudaMemcpyAsync on ctx's stream
  /// (returns at once; wait() or the next reserve() waits for it), or memcpy on the CPU.
  void copy_to_device(const Context& ctx, void* dst, size_t bytes);
  /// Blocks until the last copy_to_device() has finished reading the buffer (no-op otherwise);
  /// when it has to wait, that counts as one of the copy's context's stream_waits().
  void wait();

 private:
  void release() noexcept;
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
  bool pinned_ = false;
  void* event_ = nullptr;  // cudaEvent_t of the last copy
  bool pending_ = false;
  const Context* copied_on_ = nullptr;  // the last copy's context: a wait for it is counted there
};

}  // namespace lockstep

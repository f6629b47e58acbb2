#pragma once
// Context: everything a kernel launch needs on one device.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "lockstep/core/device.h"

namespace lockstep {

struct DeviceErrorRecord;  // lockstep/core/device_error.h
class LaunchRecorder;      // lockstep/core/launch_recorder.h
class Profile;             // lockstep/core/profile.h

struct ContextOptions {
  /// Allow TF32 tensor-core math in cuBLAS GEMMs (faster, ~1e-3 relative error). Off by
  /// default so that CUDA results match the CPU reference to fp32 precision.
  bool allow_tf32 = false;
  /// Threads the CPU kernels use (kernels/cpu/parallel.h); 0: every CPU the process may run on
  /// (its affinity mask). Results are bitwise the same for any value. The BLAS runs
  /// single-threaded (process-wide: creating a Context sets it), the kernels splitting GEMMs into
  /// fixed blocks instead.
  int cpu_threads = 0;
  /// Seed of the context's random stream (dropout and other per-step draws).
  uint64_t seed = 0;
  /// bf16 tensor-core math in cuBLAS GEMMs (CUBLAS_COMPUTE_32F_FAST_16BF: fp32 matrices in and
  /// out, each product of inputs cut to bf16, summed in fp32): |error| <= 2^-6 · Σ|a||b|
  /// per element (kernels/gemm.h). Takes precedence over allow_tf32. CUDA only: CPU GEMMs
  /// stay fp32.
  bool allow_bf16 = false;
  /// CUDA graphs: a training step's forward and backward are captured once per batch shape and
  /// replayed (train/step_graphs.h), batches padded so that their shapes repeat; the bits are
  /// those of launching every kernel. CUDA only (a CPU step launches nothing to save).
  bool cuda_graphs = true;
  /// Whether LOCKSTEP_SYNC_CHECK=1 synchronises this context's stream after each kernel. Off for
  /// a communicator's own stream: its kernels follow collectives that are waited for against a
  /// deadline, never by blocking on the stream.
  bool sync_check = true;
};

/// Owns the per-device state used by kernels: on CUDA a non-blocking stream, a cuBLAS handle
/// bound to it, a stream-ordered scratch workspace and the record in which kernels report invalid
/// input (lockstep/core/device_error.h); on the CPU only the workspace.
/// All work a Context launches is ordered on its stream. Move-only; not thread-safe (use one
/// Context per thread). Buffers allocated on a Context must not outlive it. CUDA: kernels
/// launch on the calling thread's current device, which the constructor makes the context's
/// device; a thread that uses contexts on two devices must cudaSetDevice between them (lockstep
/// itself drives one device per process: one GPU per rank).
class Context {
 public:
  /// A CPU context.
  Context();
  /// A context on `device`; for CUDA it makes that device current on the calling thread.
  explicit Context(Device device, ContextOptions options = {});
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Device& device() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_cpu() const { return device().is_cpu(); }
  const ContextOptions& options() const;

  /// The cudaStream_t of this context (nullptr on the CPU).
  void* stream() const;
  /// The cublasHandle_t of this context (nullptr on the CPU).
  void* cublas() const;

  /// Scratch memory of at least `bytes` on this context's device, valid until the next call
  /// of workspace() on this context (stream order on CUDA). Grows, never shrinks.
  void* workspace(size_t bytes) const;
  /// Scratch of its own for the partial sums of the CUDA column reductions (bias and PReLU
  /// gradients), so that they may reduce what their caller keeps in workspace(). Same rules:
  /// valid until the next call of reduce_scratch(); grows, never shrinks.
  void* reduce_scratch(size_t bytes) const;

  /// Waits until all work on this context's stream is done (no-op on the CPU).
  void synchronize() const;
  /// Work enqueued on this context from now on runs after the work enqueued on `other` so far
  /// (CUDA: an event recorded on other's stream, waited for by this stream; the host does not
  /// wait). Both on the same device. No-op on the CPU, where work is done when enqueued.
  void wait_for(const Context& other) const;

  /// The record in which CUDA kernels launched on this context report invalid input (device
  /// memory; nullptr on the CPU, whose kernels throw at once). See lockstep/core/device_error.h.
  DeviceErrorRecord* device_error() const;
  /// A fresh, nonzero id for one launch of a kernel that may record into device_error(): an
  /// error found by a later launch never replaces the one an earlier launch recorded.
  uint64_t next_launch_id() const;
  /// Reports invalid input found by this context's CUDA kernels: waits for the stream, reads the
  /// record and, when a kernel recorded an error, resets it and throws lockstep::Error with the
  /// message the CPU reference throws for the same input. For callers that do not read device
  /// memory with to_host(), which checks the record in the same synchronisation as its copy.
  /// Not counted in host_reads(). No-op on the CPU.
  void check_device_errors() const;
  /// The copy of to_host(): `bytes` from this context's device memory `src` to host memory `dst`
  /// (returns when the data has arrived), with the device error record read in the same
  /// synchronisation; throws as check_device_errors() (after the copy) when an error was
  /// recorded. A plain memcpy on the CPU. Not counted in host_reads() (to_host() counts).
  void copy_to_host(void* dst, const void* src, size_t bytes) const;

  /// The context's counter-based random stream (Philox, lockstep/core/philox.h): draws are
  /// philox_u32(random_seed(), stream, counter). reserve_random(n) returns the first of n fresh
  /// counters and advances the offset, so successive users get disjoint numbers and the same
  /// sequence of calls gives the same numbers on the CPU and on CUDA. The offset is part of a
  /// checkpoint (random_offset / set_random_offset).
  uint64_t random_seed() const;
  uint64_t reserve_random(uint64_t n) const;
  uint64_t random_offset() const;
  void set_random_offset(uint64_t offset);

  /// Counters of the random stream for work a CUDA graph may replay (dropout): a kernel cannot
  /// take the counter as an argument there, since a replay would draw the same numbers again.
  /// reserve_random_counters(n) reserves n counters like reserve_random(n) and returns the
  /// first as `*base + offset`, where base is one uint64 in this context's memory, read by the
  /// kernel when it runs (null until the first sync_random_base(): then the first is `offset`).
  /// sync_random_base() writes random_offset() into base, in stream order, when it holds
  /// another value: called before each region of device work that may be a graph
  /// (train/step_graphs.h), it gives the region's n-th draw the same {base, offset} arguments at
  /// every step, and fresh numbers. Work that uses counters must be enqueued before the next
  /// sync. Not inside a recorded region (it is a launch of its own).
  struct RandomCounters {
    const uint64_t* base;
    uint64_t offset;
  };
  RandomCounters reserve_random_counters(uint64_t n) const;
  void sync_random_base() const;

  /// Device→host reads made through to_host() on this context (counted on the CPU too, where
  /// they are plain copies), so that tests can hold the training step to one read per step.
  uint64_t host_reads() const;
  void count_host_read() const;
  /// Times the host waited for this context's CUDA stream: for all it holds (synchronize(), the
  /// host reads, a copy between pageable host memory and the device) or for a PinnedBuffer's
  /// upload that had not finished, so that tests can hold a CUDA training step to the one wait
  /// of its sync point. 0 on the CPU.
  uint64_t stream_waits() const;
  void count_stream_wait() const;
  /// Buffers (tensor memory, the workspace) allocated on this context, host or device, so that
  /// tests can hold a steady-state step to none.
  uint64_t allocations() const;
  void count_allocation() const;

  /// The Profile the step's phases and kernels are timed into (lockstep/core/profile.h), or
  /// nullptr (the default: nothing is timed). Not owned.
  Profile* profile() const { return profile_; }
  void set_profile(Profile* profile) { profile_ = profile; }

  /// The LaunchRecorder every kernel launch and device copy on this context goes through, or
  /// nullptr (the default: they run at once). Not owned.
  /// Attaching one changes how work is launched, not what it computes.
  LaunchRecorder* recorder() const { return recorder_; }
  void set_recorder(LaunchRecorder* recorder) const { recorder_ = recorder; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Profile* profile_ = nullptr;
  mutable LaunchRecorder* recorder_ = nullptr;
};

}  // namespace lockstep

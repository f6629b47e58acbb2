#pragma once
// Owning device-or-host memory (Buffer), a typed shaped array on top of it (Tensor), and
// copies between devices.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/error.h"

namespace lockstep {

/// Row-major shape; an empty Shape is a scalar (numel 1).
using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& shape);
/// "(2, 3, 4)".
std::string shape_str(const Shape& shape);

/// `bytes` of memory on a context's device: 64-byte aligned host memory on the CPU,
/// stream-ordered device memory (cudaMallocAsync) on CUDA. Move-only; freed on destruction
/// in the stream order of the context it was allocated on, which must still be alive.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Context& ctx, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  void release() noexcept;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  void* stream_ = nullptr;
};

/// A contiguous row-major array of T on one device. Contents are uninitialised after
/// construction or a growing resize(). Move-only.
template <class T>
class Tensor {
 public:
  Tensor() = default;
  Tensor(const Context& ctx, Shape shape) { resize(ctx, std::move(shape)); }

  /// Changes the shape; reallocates (dropping the contents) only when the new element count
  /// exceeds the capacity, so per-batch activations can be resized every step for free.
  void resize(const Context& ctx, Shape shape) {
    reserve(ctx, shape_numel(shape));
    shape_ = std::move(shape);
  }
  /// The same from a braced list, resize(ctx, {rows, cols}): the shape is copied into the one
  /// this tensor holds, so a steady-state step's resizes allocate nothing on the host either.
  void resize(const Context& ctx, std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (const int64_t d : dims) {
      LOCKSTEP_CHECK(d >= 0, "negative dimension in shape {}", shape_str(Shape(dims)));
      n *= d;
    }
    reserve(ctx, n);
    shape_.assign(dims);
  }

  T* data() { return static_cast<T*>(buf_.data()); }
  const T* data() const { return static_cast<const T*>(buf_.data()); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const {
    return shape_.empty() && buf_.data() == nullptr ? 0 : shape_numel(shape_);
  }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t bytes() const { return static_cast<size_t>(numel()) * sizeof(T); }
  const Device& device() const { return buf_.device(); }

 private:
  void reserve(const Context& ctx, int64_t n) {
    if (static_cast<size_t>(n) * sizeof(T) > buf_.bytes() || buf_.device() != ctx.device() ||
        buf_.data() == nullptr) {
      buf_ = Buffer(ctx, static_cast<size_t>(n > 0 ? n : 1) * sizeof(T));
    }
  }

  Buffer buf_;
  Shape shape_;
};

/// Copies `bytes` from src (on src_dev) to dst (on dst_dev) in ctx's stream order. Returns
/// when the data has arrived if dst is host memory; device-to-device copies are asynchronous.
void copy_bytes(const Context& ctx, void* dst, const Device& dst_dev, const void* src,
                const Device& src_dev, size_t bytes);
/// Sets `bytes` at dst (on ctx's device) to zero, in stream order.
void zero_bytes(const Context& ctx, void* dst, size_t bytes);
/// Sets `bytes` bytes at dst (on ctx's device) to `value`, asynchronously on ctx's stream.
void fill_bytes(const Context& ctx, void* dst, unsigned char value, size_t bytes);

/// Copies n elements from ctx's device to a host vector (waits for the data). The one way the
/// library reads device memory on the host outside a collective: counted by ctx.host_reads().
/// On CUDA the same synchronisation reads the context's device error record, and an error a
/// kernel recorded (invalid input, lockstep/core/device_error.h) is thrown here as the Error the
/// CPU reference throws for that input. n = 0 reads nothing, and checks nothing.
template <class T>
void to_host(const Context& ctx, const T* src, int64_t n, T* out) {
  ctx.count_host_read();
  if (n > 0) ctx.copy_to_host(out, src, static_cast<size_t>(n) * sizeof(T));
}
/// The same into a new host vector (the form above reads into memory the caller keeps: a
/// steady-state step allocates nothing).
template <class T>
std::vector<T> to_host(const Context& ctx, const T* src, int64_t n) {
  std::vector<T> out(static_cast<size_t>(n));
  to_host(ctx, src, n, out.data());
  return out;
}
template <class T>
std::vector<T> to_host(const Context& ctx, const Tensor<T>& t) {
  return to_host(ctx, t.data(), t.numel());
}

/// Resizes dst to `shape` (default: {src.size()}) and copies the host vector into it.
template <class T>
void upload(const Context& ctx, const std::vector<T>& src, Tensor<T>& dst, Shape shape = {}) {
  if (shape.empty()) {  // a braced shape: no host allocation (the steady-state step uploads so)
    dst.resize(ctx, {static_cast<int64_t>(src.size())});
  } else {
    LOCKSTEP_CHECK(shape_numel(shape) == static_cast<int64_t>(src.size()),
                   "upload: shape {} holds {} elements but the host vector has {}",
                   shape_str(shape), shape_numel(shape), src.size());
    dst.resize(ctx, std::move(shape));
  }
  if (!src.empty())
    copy_bytes(ctx, dst.data(), ctx.device(), src.data(), Device::cpu(), src.size() * sizeof(T));
}

/// A Tensor on ctx's device holding a copy of a host vector.
template <class T>
Tensor<T> make_tensor(const Context& ctx, const std::vector<T>& src, Shape shape = {}) {
  Tensor<T> t;
  upload(ctx, src, t, std::move(shape));
  return t;
}

}  // namespace lockstep

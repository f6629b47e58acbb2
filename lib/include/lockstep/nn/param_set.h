#pragma once
// ParamSet: all dense parameters of a model in ONE contiguous buffer and their gradients in
// another, so that one all-reduce and one fused optimizer launch cover them all.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"
#include "lockstep/io/safetensors.h"

namespace lockstep::nn {

/// How a parameter is initialised. Random kinds draw from the counter-based RNG keyed by
/// (seed, XXH64(parameter name)), so initial values are identical on CPU and CUDA and do not
/// shift when other parameters are added.
struct Init {
  enum class Kind { Constant, Uniform };
  Kind kind = Kind::Constant;
  float a = 0.0f;  // Constant: the value; Uniform: lower bound
  float b = 0.0f;  // Uniform: upper bound

  static Init zeros() { return {Kind::Constant, 0.0f, 0.0f}; }
  static Init constant(float v) { return {Kind::Constant, v, 0.0f}; }
  static Init uniform(float lo, float hi) { return {Kind::Uniform, lo, hi}; }
  /// Glorot/Xavier uniform: U(-s, s), s = sqrt(6 / (fan_in + fan_out)).
  static Init xavier_uniform(int64_t fan_in, int64_t fan_out);
};

/// Told by the layers as the backward proceeds (ParamSet::grad_written), so that a collective
/// can start on gradients that are final while the rest of the backward runs (the lockstep
/// step's bucketed all-reduce, train/gradient_buckets.h).
class GradListener {
 public:
  virtual ~GradListener() = default;
  /// The backward has written (on CUDA: enqueued on ctx's stream) a contribution to the
  /// gradient of parameter `handle`. Throws Error when that gradient may no longer change.
  virtual void grad_written(const Context& ctx, int handle) = 0;
};

/// Registry and storage of dense parameters (T = float for training, double for gradient checks).
///
/// Two phases: layers call add() in their constructors (and keep the returned handle), then the
/// owner calls allocate() once. Trainable parameters are laid out first, in the order added, each
/// starting at a 16-element boundary; non-trainable state (e.g. Dice running averages) follows.
/// `trainable_size()` elements at the start of values()/grads() are what the optimizer and the
/// all-reduce touch. Padding elements stay zero. Not thread-safe.
template <class T>
class ParamSet {
 public:
  using Handle = int;
  struct Entry {
    std::string name;
    Shape shape;
    Init init;
    bool trainable = true;
    int64_t offset = -1;  // element offset into values()/grads(); set by allocate()
    int64_t numel() const { return shape_numel(shape); }
  };

  ParamSet() = default;
  ParamSet(ParamSet&&) noexcept = default;
  ParamSet& operator=(ParamSet&&) noexcept = default;

  /// Declares a parameter. Names must be unique ("mlp.0.weight"); throws Error on a duplicate
  /// name, a non-positive dimension, or a call after allocate().
  Handle add(const std::string& name, Shape shape, Init init, bool trainable = true);

  /// Lays out, allocates (on ctx's device) and initialises all parameters; zeroes the gradients.
  void allocate(const Context& ctx, uint64_t seed);
  bool allocated() const { return allocated_; }

  T* value(Handle h) { return values_.data() + entry(h).offset; }
  const T* value(Handle h) const { return values_.data() + entry(h).offset; }
  T* grad(Handle h) { return grads_.data() + entry(h).offset; }
  const T* grad(Handle h) const { return grads_.data() + entry(h).offset; }
  const Entry& entry(Handle h) const { return entries_.at(static_cast<size_t>(h)); }
  const std::vector<Entry>& entries() const { return entries_; }
  /// Handle of the parameter called `name`; throws Error when there is none.
  Handle find(const std::string& name) const;

  T* values() { return values_.data(); }
  const T* values() const { return values_.data(); }
  T* grads() { return grads_.data(); }
  const T* grads() const { return grads_.data(); }
  /// Elements in values()/grads() (trainable region, state region and padding).
  int64_t size() const { return size_; }
  /// Elements at the start of the buffers that hold trainable parameters (with padding).
  int64_t trainable_size() const { return trainable_size_; }
  const Device& device() const { return values_.device(); }

  /// Layers call grad_written(ctx, h) after each write into grad(h) in their backward; it tells
  /// the listener, if one is set (none by default; a pointer test then).
  void set_grad_listener(GradListener* listener) { listener_ = listener; }
  void grad_written(const Context& ctx, Handle h) const {
    if (listener_) listener_->grad_written(ctx, h);
  }

  /// Sets every gradient to zero (not the tail).
  void zero_grad(const Context& ctx);

  /// Reserves `n` elements right after the gradient buffer (zeroed), so that a collective can
  /// carry extra data (the lockstep control block) in the same call as the gradients: grads()
  /// then spans size() + grad_tail_size() contiguous elements. Keeps the gradient values.
  void reserve_grad_tail(const Context& ctx, int64_t n);
  T* grad_tail() { return grads_.data() + size_; }
  int64_t grad_tail_size() const { return tail_; }

  /// A 64-bit hash of names, shapes, trainability and layout: equal on two replicas exactly when
  /// they hold the same parameter layout.
  uint64_t layout_hash() const;

  /// Copies all parameter values to a host map name -> values.
  std::map<std::string, std::vector<T>> to_host(const Context& ctx) const;

  /// Saves every parameter as an F32 (or F64) tensor of its shape into a safetensors file
  /// (atomically, with checksums); `metadata` is stored in the header.
  void save(const Context& ctx, const std::string& path,
            const std::map<std::string, std::string>& metadata = {}) const;
  /// Loads values saved by save(): every parameter must be present with the same shape and
  /// dtype, or Error names the file, the parameter and what differs. Extra tensors are ignored.
  /// A file that does not fit leaves the parameters unchanged.
  void load(const Context& ctx, const std::string& path);
  /// The two halves of load() for callers that check several files before changing anything:
  /// check_file() throws as load() would; assign_from() copies (after check_file()).
  void check_file(const io::SafetensorsFile& file) const;
  void assign_from(const Context& ctx, const io::SafetensorsFile& file);

 private:
  std::vector<Entry> entries_;
  Tensor<T> values_, grads_;
  int64_t size_ = 0, trainable_size_ = 0, tail_ = 0;
  bool allocated_ = false;
  GradListener* listener_ = nullptr;
};

extern template class ParamSet<float>;
extern template class ParamSet<double>;

}  // namespace lockstep::nn

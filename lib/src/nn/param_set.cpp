#include "lockstep/nn/param_set.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>

#include "kernels/init.h"
#include "lockstep/io/safetensors.h"

namespace lockstep::nn {

namespace {
constexpr int64_t kAlign = 16;  // elements; 64 bytes for float
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
uint64_t name_stream(const std::string& name) { return XXH64(name.data(), name.size(), 0); }
template <class T>
constexpr io::DType kDType = io::DType::F32;
template <>
constexpr io::DType kDType<double> = io::DType::F64;
}  // namespace

Init Init::xavier_uniform(int64_t fan_in, int64_t fan_out) {
  const float s = static_cast<float>(std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)));
  return uniform(-s, s);
}

template <class T>
typename ParamSet<T>::Handle ParamSet<T>::add(const std::string& name, Shape shape, Init init,
                                              bool trainable) {
  LOCKSTEP_CHECK(!allocated_, "ParamSet::add('{}') after allocate(): declare all parameters first",
                 name);
  LOCKSTEP_CHECK(!name.empty(), "ParamSet::add: empty parameter name");
  for (const auto& e : entries_)
    LOCKSTEP_CHECK(e.name != name, "ParamSet::add: duplicate parameter name '{}'", name);
  for (int64_t d : shape)
    LOCKSTEP_CHECK(d > 0, "parameter '{}' has shape {}: every dimension must be >= 1", name,
                   shape_str(shape));
  LOCKSTEP_CHECK(init.kind != Init::Kind::Uniform || init.a <= init.b,
                 "parameter '{}': uniform init with lower bound {} > upper bound {}", name, init.a,
                 init.b);
  entries_.push_back(Entry{name, std::move(shape), init, trainable, -1});
  return static_cast<Handle>(entries_.size() - 1);
}

template <class T>
void ParamSet<T>::allocate(const Context& ctx, uint64_t seed) {
  LOCKSTEP_CHECK(!allocated_, "ParamSet::allocate() called twice");
  int64_t offset = 0;
  for (int pass = 0; pass < 2; ++pass) {  // trainable first, then state
    for (auto& e : entries_) {
      if (e.trainable != (pass == 0)) continue;
      e.offset = offset;
      offset = align_up(offset + e.numel());
    }
    if (pass == 0) trainable_size_ = offset;
  }
  size_ = offset;
  values_.resize(ctx, {std::max<int64_t>(size_, 1)});
  grads_.resize(ctx, {std::max<int64_t>(size_, 1)});
  zero_bytes(ctx, values_.data(), values_.bytes());
  zero_bytes(ctx, grads_.data(), grads_.bytes());
  for (const auto& e : entries_) {
    T* p = values_.data() + e.offset;
    if (e.init.kind == Init::Kind::Uniform) {
      kernels::fill_uniform<T>(ctx, e.numel(), seed, name_stream(e.name), 0, e.init.a, e.init.b, p);
    } else if (e.init.a != 0.0f) {
      kernels::fill_constant<T>(ctx, e.numel(), static_cast<T>(e.init.a), p);
    }
  }
  allocated_ = true;
}

template <class T>
typename ParamSet<T>::Handle ParamSet<T>::find(const std::string& name) const {
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].name == name) return static_cast<Handle>(i);
  throw Error(fmt::format("no parameter named '{}'", name));
}

template <class T>
void ParamSet<T>::zero_grad(const Context& ctx) {
  LOCKSTEP_ASSERT(allocated_);
  zero_bytes(ctx, grads_.data(), static_cast<size_t>(size_) * sizeof(T));
}

template <class T>
void ParamSet<T>::reserve_grad_tail(const Context& ctx, int64_t n) {
  LOCKSTEP_ASSERT(allocated_ && n >= 0);
  if (n == tail_) return;
  Tensor<T> grown(ctx, {std::max<int64_t>(size_ + n, 1)});
  copy_bytes(ctx, grown.data(), ctx.device(), grads_.data(), ctx.device(),
             static_cast<size_t>(size_) * sizeof(T));
  zero_bytes(ctx, grown.data() + size_, static_cast<size_t>(n) * sizeof(T));
  grads_ = std::move(grown);
  tail_ = n;
}

template <class T>
uint64_t ParamSet<T>::layout_hash() const {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, sizeof(T));
  for (const auto& e : entries_) {
    XXH64_update(st, e.name.data(), e.name.size() + 1);
    XXH64_update(st, e.shape.data(), e.shape.size() * sizeof(int64_t));
    const int64_t extra[2] = {e.trainable ? 1 : 0, e.offset};
    XXH64_update(st, extra, sizeof(extra));
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  return h;
}

template <class T>
std::map<std::string, std::vector<T>> ParamSet<T>::to_host(const Context& ctx) const {
  LOCKSTEP_ASSERT(allocated_);
  const std::vector<T> all = lockstep::to_host(ctx, values_.data(), size_);
  std::map<std::string, std::vector<T>> out;
  for (const auto& e : entries_)
    out[e.name] = std::vector<T>(all.begin() + e.offset, all.begin() + e.offset + e.numel());
  return out;
}

template <class T>
void ParamSet<T>::save(const Context& ctx, const std::string& path,
                       const std::map<std::string, std::string>& metadata) const {
  LOCKSTEP_ASSERT(allocated_);
  const std::vector<T> all = lockstep::to_host(ctx, values_.data(), size_);
  std::vector<io::TensorRef> refs;
  for (const auto& e : entries_)
    refs.push_back({e.name, kDType<T>, e.shape, all.data() + e.offset});
  io::write_safetensors(path, refs, metadata);
}

template <class T>
void ParamSet<T>::load(const Context& ctx, const std::string& path) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  check_file(file);
  assign_from(ctx, file);
}

template <class T>
void ParamSet<T>::check_file(const io::SafetensorsFile& file) const {
  for (const auto& e : entries_) {
    LOCKSTEP_CHECK(file.has(e.name),
                   "{}: parameter '{}' is missing (does the file belong to this "
                   "model configuration?)",
                   file.path, e.name);
    const auto& t = file.get(e.name);
    LOCKSTEP_CHECK(t.shape == e.shape && t.dtype == kDType<T>,
                   "{}: parameter '{}' is {} {} in the file but {} {} in the model", file.path,
                   e.name, io::dtype_name(t.dtype), shape_str(t.shape), io::dtype_name(kDType<T>),
                   shape_str(e.shape));
  }
}

template <class T>
void ParamSet<T>::assign_from(const Context& ctx, const io::SafetensorsFile& file) {
  LOCKSTEP_ASSERT(allocated_);
  std::vector<T> all = lockstep::to_host(ctx, values_.data(), size_);
  for (const auto& e : entries_) {
    const auto& t = file.get(e.name);
    std::memcpy(all.data() + e.offset, t.bytes.data(), t.bytes.size());
  }
  copy_bytes(ctx, values_.data(), ctx.device(), all.data(), Device::cpu(), all.size() * sizeof(T));
}

template class ParamSet<float>;
template class ParamSet<double>;

}  // namespace lockstep::nn

#include "lockstep/embedding/dynamic_table.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/copy.h"
#include "kernels/feasign.h"
#include "kernels/init.h"
#include "kernels/optimizer.h"
#include "lockstep/embedding/feasign_init.h"

namespace lockstep::embedding {

bool is_u64_tensor(const std::string& name) {
  return name.size() >= 5 && name.compare(name.size() - 5, 5, ".keys") == 0;
}

namespace {
constexpr int kFeasignColumns = 7;  // held, admitted, seen, unseen_days, show, click, delta_score
}  // namespace

template <class T>
DynamicTable<T>::DynamicTable(const Context& ctx, int64_t capacity, int64_t dim, float init_scale,
                              const AccessorConfig& accessor, int64_t shrink_every_steps,
                              const nn::OptimizerConfig& optimizer, uint64_t seed, uint64_t stream)
    : dim_(dim),
      init_scale_(init_scale),
      accessor_(accessor),
      shrink_every_steps_(shrink_every_steps),
      optimizer_(optimizer),
      seed_(seed),
      stream_(stream),
      on_cpu_(ctx.is_cpu()),
      index_(capacity) {
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  stats_.assign(static_cast<size_t>(capacity), FeasignStats{});
  admitted_.assign(static_cast<size_t>(capacity), 0);
  const T acc0 = adam ? T(0) : T(optimizer_.initial_accumulator);
  const auto init = [&](Tensor<T>& t, Shape shape, T value) {
    t.resize(ctx, std::move(shape));
    kernels::fill_constant<T>(ctx, t.numel(), value, t.data());
  };
  init(lr_, {capacity}, T(0));
  init(lr_state0_, {capacity}, acc0);
  init(embedx_, {capacity, dim}, T(0));
  if (adam) {
    init(lr_state1_, {capacity}, T(0));
    init(embedx_state0_, {capacity, dim}, T(0));
    init(embedx_state1_, {capacity, dim}, T(0));
  } else {
    init(embedx_state0_, {capacity}, acc0);
  }
}

template <class T>
T DynamicTable<T>::lr(int64_t slot) const {
  LOCKSTEP_CHECK(on_cpu_, "DynamicTable::lr(slot) reads host memory: use values() on a device");
  return lr_.data()[slot];
}

template <class T>
std::pair<std::vector<T>, std::vector<T>> DynamicTable<T>::values(
    const Context& ctx, const std::vector<int64_t>& slots) const {
  const auto n = static_cast<int64_t>(slots.size());
  upload(ctx, slots, gather_index_);
  Tensor<T> lr(ctx, {std::max<int64_t>(n, 1)}), rows(ctx, {std::max<int64_t>(n, 1), dim_});
  kernels::gather_rows<T>(ctx, n, 1, lr_.data(), 1, capacity(), gather_index_.data(), lr.data(), 1);
  kernels::gather_rows<T>(ctx, n, dim_, embedx_.data(), dim_, capacity(), gather_index_.data(),
                          rows.data(), dim_);
  return {lockstep::to_host(ctx, lr.data(), n), lockstep::to_host(ctx, rows.data(), n * dim_)};
}

template <class T>
void DynamicTable<T>::gather(const Context& ctx, const uint64_t* keys, int64_t n, T* embedx,
                             T* lr) const {
  // One index array: the embedx row of each key (-1: zeros), then its lr row (-1: zero).
  std::vector<int64_t>& index = host_.index;
  index.resize(static_cast<size_t>(2 * n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = index_.find(keys[i]);
    index[i] = slot >= 0 && admitted_[static_cast<size_t>(slot)] ? slot : -1;
    index[n + i] = slot;
  }
  upload(ctx, index, gather_index_);
  kernels::gather_rows<T>(ctx, n, dim_, embedx_.data(), dim_, capacity(), gather_index_.data(),
                          embedx, dim_);
  kernels::gather_rows<T>(ctx, n, 1, lr_.data(), 1, capacity(), gather_index_.data() + n, lr, 1);
}

template <class T>
void DynamicTable<T>::reset_rows(const Context& ctx, const int64_t* slots, int64_t n) {
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  const T acc0 = adam ? T(0) : T(optimizer_.initial_accumulator);
  const int64_t cap = capacity();
  kernels::fill_rows<T>(ctx, n, 1, slots, T(0), lr_.data(), 1, cap);
  kernels::fill_rows<T>(ctx, n, 1, slots, acc0, lr_state0_.data(), 1, cap);
  kernels::fill_rows<T>(ctx, n, dim_, slots, T(0), embedx_.data(), dim_, cap);
  if (adam) {
    kernels::fill_rows<T>(ctx, n, 1, slots, T(0), lr_state1_.data(), 1, cap);
    kernels::fill_rows<T>(ctx, n, dim_, slots, T(0), embedx_state0_.data(), dim_, cap);
    kernels::fill_rows<T>(ctx, n, dim_, slots, T(0), embedx_state1_.data(), dim_, cap);
  } else {
    kernels::fill_rows<T>(ctx, n, 1, slots, acc0, embedx_state0_.data(), 1, cap);
  }
}

template <class T>
void DynamicTable<T>::update_rows(const Context& ctx, float lr, int64_t dim, const int64_t* count,
                                  const uint64_t* slots, int64_t n, const T* grads, T grad_scale,
                                  int64_t step, T* weights, T* s0, T* s1) {
  if (n == 0) return;
  const auto& o = optimizer_;
  if (o.kind == nn::OptimizerKind::Adam)
    kernels::sparse_adam_update<T>(ctx, {lr, o.beta1, o.beta2, o.eps, o.weight_decay}, step,
                                   grad_scale, dim, count, n, slots, grads, weights, capacity(), s0,
                                   s1);
  else
    kernels::sparse_adagrad_update<T>(ctx, {lr, o.eps}, grad_scale, dim, count, n, slots, grads,
                                      weights, capacity(), s0);
}

// Makes room for `needed` new feasigns: the held feasigns not in this step, lowest score first
// (ties: the smaller key first), leave the table.
template <class T>
void DynamicTable<T>::evict_for(int64_t needed) {
  const std::vector<uint8_t>& in_step = host_.in_step;
  std::vector<int64_t>& candidates = host_.candidates;
  candidates.clear();
  for (int64_t s = 0; s < capacity(); ++s)
    if (index_.occupied(s) && !in_step[static_cast<size_t>(s)]) candidates.push_back(s);
  const int64_t n = std::min<int64_t>(needed, static_cast<int64_t>(candidates.size()));
  if (n <= 0) return;
  const auto lower = [&](int64_t a, int64_t b) {
    const float sa = show_click_score(accessor_, stats_[a].show, stats_[a].click);
    const float sb = show_click_score(accessor_, stats_[b].show, stats_[b].click);
    return sa != sb ? sa < sb : index_.key_of(a) < index_.key_of(b);
  };
  std::nth_element(candidates.begin(), candidates.begin() + (n - 1), candidates.end(), lower);
  for (int64_t i = 0; i < n; ++i) index_.erase(index_.key_of(candidates[static_cast<size_t>(i)]));
  counters_.evicted += n;
}

template <class T>
void DynamicTable<T>::apply(const Context& ctx, const SparseGrad<T>& grad, T grad_scale,
                            int64_t step) {
  int64_t n = 0;
  if (grad.ready()) lockstep::to_host(ctx, grad.count(), 1, &n);
  const int64_t width = dim_ + kDynamicRecordExtra;
  LOCKSTEP_CHECK(n == 0 || grad.dim() == width,
                 "dynamic table: a gradient of width {} for records of width {}", grad.dim(),
                 width);
  if (n == 0) return after_update(step);
  const T* rec = grad.rows();

  // 0. One read: the merged keys, then each record's show and click (as raw 64-bit words).
  static_assert(8 % sizeof(T) == 0 && sizeof(T) <= 8, "records pack into 64-bit words");
  const int64_t count_words = n * 2 * static_cast<int64_t>(sizeof(T)) / 8;
  plan_.resize(ctx, {n + count_words});
  copy_bytes(ctx, plan_.data(), ctx.device(), grad.ids(), ctx.device(), n * sizeof(uint64_t));
  kernels::copy_2d<T>(ctx, n, 2, rec, width, reinterpret_cast<T*>(plan_.data() + n), 2);
  std::vector<uint64_t>& words = host_.words;
  words.resize(static_cast<size_t>(n + count_words));
  lockstep::to_host(ctx, plan_.data(), n + count_words, words.data());
  const uint64_t* keys = words.data();
  std::vector<T>& counts = host_.counts;
  counts.resize(static_cast<size_t>(2 * n));
  std::memcpy(counts.data(), words.data() + n, counts.size() * sizeof(T));

  // 1. Slots: held keys found, new ones inserted in key order (the same on every replica).
  slots_.assign(static_cast<size_t>(n), -1);
  std::vector<uint8_t>& in_step = host_.in_step;
  in_step.resize(static_cast<size_t>(capacity()), 0);  // all 0 (cleared below after use)
  int64_t fresh = 0;
  for (int64_t i = 0; i < n; ++i) {
    slots_[i] = index_.find(keys[i]);
    if (slots_[i] >= 0)
      in_step[static_cast<size_t>(slots_[i])] = 1;
    else
      ++fresh;
  }
  const int64_t room = capacity() - size();
  if (fresh > room) evict_for(fresh - room);
  for (int64_t i = 0; i < n; ++i)  // in_step back to all 0, touching only what was set
    if (slots_[i] >= 0) in_step[static_cast<size_t>(slots_[i])] = 0;
  // The plan, uploaded once: [reset: slots] [lr: count, slots, records] [embedx: count, slots,
  // records] [admit: slots, keys] (64-bit words; slots and records read as int64).
  HostScratch& h = host_;
  auto &plan = h.plan, &reset = h.reset, &lr_slots = h.lr_slots, &lr_recs = h.lr_recs,
       &x_slots = h.x_slots, &x_recs = h.x_recs, &admit_slots = h.admit_slots,
       &admit_keys = h.admit_keys;
  for (auto* v : {&reset, &lr_slots, &lr_recs, &x_slots, &x_recs, &admit_slots, &admit_keys}) {
    v->clear();
    v->reserve(static_cast<size_t>(n));  // each holds at most one entry per key
  }
  plan.clear();
  plan.reserve(static_cast<size_t>(7 * n + 2));
  for (int64_t i = 0; i < n; ++i) {
    if (slots_[i] >= 0) continue;
    bool inserted = false;
    slots_[i] = index_.insert(keys[i], &inserted);
    if (slots_[i] < 0) {
      ++counters_.dropped;
      continue;
    }
    stats_[static_cast<size_t>(slots_[i])] = FeasignStats{};
    admitted_[static_cast<size_t>(slots_[i])] = 0;
    reset.push_back(static_cast<uint64_t>(slots_[i]));
    ++counters_.inserted;
  }

  // 2. Counts; every stored key's lr learns; embedx learns where it existed before this step and
  // is created where the score now admits.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots_[i];
    if (slot < 0) continue;
    const auto s = static_cast<size_t>(slot);
    update_stats(accessor_, stats_[s], static_cast<float>(counts[2 * i]),
                 static_cast<float>(counts[2 * i + 1]));
    lr_slots.push_back(static_cast<uint64_t>(slot));
    lr_recs.push_back(static_cast<uint64_t>(i));
    if (admitted_[s]) {
      x_slots.push_back(static_cast<uint64_t>(slot));
      x_recs.push_back(static_cast<uint64_t>(i));
    } else if (admits_embedx(accessor_, stats_[s])) {
      admitted_[s] = 1;
      admit_slots.push_back(static_cast<uint64_t>(slot));
      admit_keys.push_back(keys[i]);
      ++counters_.admitted;
    }
  }
  const auto put = [&](const std::vector<uint64_t>& v) {
    const size_t at = plan.size();
    plan.insert(plan.end(), v.begin(), v.end());
    return at;
  };
  const auto put_count = [&](size_t count) {
    plan.push_back(count);
    return plan.size() - 1;
  };
  const size_t at_reset = put(reset);
  const size_t at_lr_count = put_count(lr_slots.size()), at_lr = put(lr_slots),
               at_lr_rec = put(lr_recs);
  const size_t at_x_count = put_count(x_slots.size()), at_x = put(x_slots), at_x_rec = put(x_recs);
  const size_t at_admit = put(admit_slots), at_keys = put(admit_keys);
  // Device scratch sized by bounds of the step's keys, not by what this step admitted: the
  // table's state does not grow them from step to step.
  plan_.resize(ctx, {static_cast<int64_t>(plan.capacity())});
  copy_bytes(ctx, plan_.data(), ctx.device(), plan.data(), Device::cpu(),
             plan.size() * sizeof(uint64_t));
  const uint64_t* dev = plan_.data();
  const auto as_int = [&](size_t at) { return reinterpret_cast<const int64_t*>(dev + at); };

  reset_rows(ctx, as_int(at_reset), static_cast<int64_t>(reset.size()));
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  const auto nl = static_cast<int64_t>(lr_slots.size()), nx = static_cast<int64_t>(x_slots.size());
  grads_.resize(ctx, {std::max<int64_t>(n * std::max<int64_t>(dim_, 1), 1)});  // >= nl, nx·dim
  kernels::gather_rows<T>(ctx, nl, 1, rec + 2, width, n, as_int(at_lr_rec), grads_.data(), 1);
  update_rows(ctx, accessor_.lr_learning_rate, 1, as_int(at_lr_count), dev + at_lr, nl,
              grads_.data(), grad_scale, step, lr_.data(), lr_state0_.data(),
              adam ? lr_state1_.data() : nullptr);
  kernels::gather_rows<T>(ctx, nx, dim_, rec + kDynamicRecordExtra, width, n, as_int(at_x_rec),
                          grads_.data(), dim_);
  update_rows(ctx, optimizer_.lr, dim_, as_int(at_x_count), dev + at_x, nx, grads_.data(),
              grad_scale, step, embedx_.data(), embedx_state0_.data(),
              adam ? embedx_state1_.data() : nullptr);
  kernels::feasign_init_rows<T>(ctx, static_cast<int64_t>(admit_slots.size()), dim_, dev + at_keys,
                                as_int(at_admit), seed_, stream_, init_scale_, embedx_.data(),
                                capacity());
  after_update(step);
}

template <class T>
void DynamicTable<T>::after_update(int64_t step) {
  if (shrink_every_steps_ > 0 && step % shrink_every_steps_ == 0) shrink();
}

template <class T>
int64_t DynamicTable<T>::shrink() {
  int64_t deleted = 0;
  for (int64_t s = 0; s < capacity(); ++s) {
    if (!index_.occupied(s) || !embedding::shrink(accessor_, stats_[static_cast<size_t>(s)]))
      continue;
    index_.erase(index_.key_of(s));
    ++deleted;
  }
  counters_.deleted += deleted;
  ++counters_.shrinks;
  return deleted;
}

template <class T>
void DynamicTable<T>::load_serving(const Context& ctx, const uint64_t* keys, const T* embedx,
                                   int64_t n) {
  LOCKSTEP_CHECK(n <= capacity(), "dynamic table: {} feasigns for a capacity of {}", n, capacity());
  KeyIndex index(capacity());
  for (int64_t i = 0; i < n; ++i) {
    bool inserted = false;
    const int64_t slot = index.insert(keys[i], &inserted);
    LOCKSTEP_CHECK(inserted, "dynamic table: key {} is given twice", keys[i]);
    LOCKSTEP_CHECK(slot == i, "dynamic table: an empty index gave key {} slot {}", i, slot);
  }
  index_ = std::move(index);  // an empty index hands out slots 0, 1, ...: row i is slot i
  std::fill(stats_.begin(), stats_.end(), FeasignStats{});
  std::fill(admitted_.begin(), admitted_.begin() + n, uint8_t{1});
  std::fill(admitted_.begin() + n, admitted_.end(), uint8_t{0});
  kernels::fill_constant<T>(ctx, lr_.numel(), T(0), lr_.data());
  kernels::fill_constant<T>(ctx, embedx_.numel(), T(0), embedx_.data());
  if (n > 0)
    copy_bytes(ctx, embedx_.data(), ctx.device(), embedx, Device::cpu(),
               static_cast<size_t>(n * dim_) * sizeof(T));
}

template <class T>
std::vector<int64_t> DynamicTable<T>::export_slots(bool delta) const {
  std::vector<int64_t> out;
  for (int64_t s = 0; s < capacity(); ++s) {
    if (!index_.occupied(s)) continue;
    const FeasignStats& st = stats_[static_cast<size_t>(s)];
    if (delta ? in_delta(accessor_, st) : in_base(accessor_, st)) out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [&](int64_t a, int64_t b) { return index_.key_of(a) < index_.key_of(b); });
  return out;
}

template <class T>
void DynamicTable<T>::mark_saved(bool delta) {
  for (int64_t s : export_slots(delta)) saved(stats_[static_cast<size_t>(s)]);
}

template <class T>
void DynamicTable<T>::to_host(const Context& ctx, const std::string& name,
                              std::map<std::string, std::vector<T>>& out) const {
  const auto cap = static_cast<size_t>(capacity());
  static_assert(8 % sizeof(T) == 0, "a key is a whole number of values");
  constexpr size_t per_key = 8 / sizeof(T);
  std::vector<T> keys(cap * per_key), feasign(cap * kFeasignColumns);
  for (size_t s = 0; s < cap; ++s) {
    const bool held = index_.occupied(static_cast<int64_t>(s));
    const uint64_t key = held ? index_.key_of(static_cast<int64_t>(s)) : 0;
    std::memcpy(keys.data() + s * per_key, &key, 8);
    const FeasignStats& st = stats_[s];
    T* f = feasign.data() + s * kFeasignColumns;
    f[0] = held ? T(1) : T(0);
    f[1] = held && admitted_[s] ? T(1) : T(0);
    f[2] = st.seen ? T(1) : T(0);
    f[3] = static_cast<T>(st.unseen_days);
    f[4] = st.show;
    f[5] = st.click;
    f[6] = st.delta_score;
  }
  out[name + ".keys"] = std::move(keys);
  out[name + ".feasign"] = std::move(feasign);
  for (const auto& [suffix, t] : row_tensors(*this))
    out[name + suffix] = lockstep::to_host(ctx, *t);
}

template <class T>
template <class Self>
auto DynamicTable<T>::row_tensors(Self& self)
    -> std::vector<std::pair<std::string, decltype(&self.lr_)>> {
  if (self.optimizer_.kind == nn::OptimizerKind::Adam)
    return {{".lr", &self.lr_},           {".weight", &self.embedx_},
            {".lr_m", &self.lr_state0_},  {".lr_v", &self.lr_state1_},
            {".m", &self.embedx_state0_}, {".v", &self.embedx_state1_}};
  return {{".lr", &self.lr_},
          {".weight", &self.embedx_},
          {".lr_accum", &self.lr_state0_},
          {".accum", &self.embedx_state0_}};
}

template <class T>
void DynamicTable<T>::from_host(const Context& ctx, const std::string& name,
                                const std::map<std::string, std::vector<T>>& tensors) {
  std::map<std::string, std::vector<T>> like;
  to_host(ctx, name, like);
  for (const auto& [n, v] : like) {
    auto it = tensors.find(n);
    LOCKSTEP_CHECK(it != tensors.end(), "embedding tensor '{}' is missing", n);
    LOCKSTEP_CHECK(it->second.size() == v.size(),
                   "embedding tensor '{}' has {} values, the table needs {}", n, it->second.size(),
                   v.size());
  }
  const auto cap = static_cast<size_t>(capacity());
  constexpr size_t per_key = 8 / sizeof(T);
  const std::vector<T>& keys = tensors.at(name + ".keys");
  const std::vector<T>& feasign = tensors.at(name + ".feasign");
  std::vector<uint64_t> slot_keys(cap);
  std::vector<uint8_t> used(cap);
  for (size_t s = 0; s < cap; ++s) {
    std::memcpy(&slot_keys[s], keys.data() + s * per_key, 8);
    const T* f = feasign.data() + s * kFeasignColumns;
    LOCKSTEP_CHECK((f[0] == T(0) || f[0] == T(1)) && (f[1] == T(0) || f[1] == T(1)) && f[3] >= T(0),
                   "embedding tensor '{}.feasign': slot {} is malformed", name, s);
    used[s] = f[0] == T(1) ? 1 : 0;
  }
  KeyIndex index(capacity());
  index.restore(slot_keys.data(), used.data());  // throws for a key held twice: nothing changed
  index_ = std::move(index);
  for (size_t s = 0; s < cap; ++s) {
    const T* f = feasign.data() + s * kFeasignColumns;
    admitted_[s] = f[1] == T(1) ? 1 : 0;
    FeasignStats& st = stats_[s];
    st.seen = f[2] != T(0);
    st.unseen_days = static_cast<int32_t>(f[3]);
    st.show = static_cast<float>(f[4]);
    st.click = static_cast<float>(f[5]);
    st.delta_score = static_cast<float>(f[6]);
  }
  for (const auto& [suffix, t] : row_tensors(*this)) {
    const std::vector<T>& v = tensors.at(name + suffix);
    copy_bytes(ctx, t->data(), ctx.device(), v.data(), Device::cpu(), v.size() * sizeof(T));
  }
}

template class DynamicTable<float>;
template class DynamicTable<double>;

}  // namespace lockstep::embedding

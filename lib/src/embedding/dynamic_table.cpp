#include "lockstep/embedding/dynamic_table.h"

#include <algorithm>
#include <cstring>
#include <numeric>

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
DynamicTable<T>::DynamicTable(int64_t capacity, int64_t dim, float init_scale,
                              const AccessorConfig& accessor, int64_t shrink_every_steps,
                              const nn::OptimizerConfig& optimizer, uint64_t seed, uint64_t stream)
    : dim_(dim),
      init_scale_(init_scale),
      accessor_(accessor),
      shrink_every_steps_(shrink_every_steps),
      optimizer_(optimizer),
      seed_(seed),
      stream_(stream),
      index_(capacity) {
  const auto cap = static_cast<size_t>(capacity), d = static_cast<size_t>(dim);
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  stats_.assign(cap, FeasignStats{});
  admitted_.assign(cap, 0);
  lr_.assign(cap, T(0));
  embedx_.assign(cap * d, T(0));
  lr_state0_.assign(cap, T(0));
  embedx_state0_.assign(adam ? cap * d : cap, T(0));
  if (adam) {
    lr_state1_.assign(cap, T(0));
    embedx_state1_.assign(cap * d, T(0));
  }
}

template <class T>
void DynamicTable<T>::gather(const uint64_t* keys, int64_t n, T* embedx, T* lr) const {
  const auto d = static_cast<size_t>(dim_);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = index_.find(keys[i]);
    T* row = embedx + static_cast<size_t>(i) * d;
    if (slot >= 0 && admitted_[static_cast<size_t>(slot)])
      std::memcpy(row, embedx_.data() + static_cast<size_t>(slot) * d, d * sizeof(T));
    else
      std::fill(row, row + d, T(0));
    lr[i] = slot >= 0 ? lr_[static_cast<size_t>(slot)] : T(0);
  }
}

// A new (or re-created) feasign: no statistics, lr 0, no embedx, fresh optimizer state.
template <class T>
void DynamicTable<T>::reset_slot(int64_t slot) {
  const auto s = static_cast<size_t>(slot), d = static_cast<size_t>(dim_);
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  const T acc0 = adam ? T(0) : T(optimizer_.initial_accumulator);
  stats_[s] = FeasignStats{};
  admitted_[s] = 0;
  lr_[s] = T(0);
  lr_state0_[s] = acc0;
  std::fill(embedx_.begin() + s * d, embedx_.begin() + (s + 1) * d, T(0));
  if (adam) {
    lr_state1_[s] = T(0);
    std::fill(embedx_state0_.begin() + s * d, embedx_state0_.begin() + (s + 1) * d, T(0));
    std::fill(embedx_state1_.begin() + s * d, embedx_state1_.begin() + (s + 1) * d, T(0));
  } else {
    embedx_state0_[s] = acc0;
  }
}

// Makes room for `needed` new feasigns: the held feasigns not in this step, lowest score first
// (ties: the smaller key first), leave the table.
template <class T>
void DynamicTable<T>::evict_for(int64_t needed, const std::vector<uint8_t>& in_step) {
  std::vector<int64_t> candidates;
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
  LOCKSTEP_CHECK(ctx.is_cpu(), "dynamic tables run on the CPU for now");
  const int64_t n = grad.ready() ? *grad.count() : 0;
  const int64_t width = dim_ + kDynamicRecordExtra;
  LOCKSTEP_CHECK(n == 0 || grad.dim() == width,
                 "dynamic table: a gradient of width {} for records of width {}", grad.dim(), width);
  const uint64_t* keys = grad.ids();
  const T* rec = grad.rows();
  const auto d = static_cast<size_t>(dim_);

  // 1. Slots: held keys found, new ones inserted in key order (the same on every replica).
  slots_.assign(static_cast<size_t>(n), -1);
  std::vector<uint8_t> in_step(static_cast<size_t>(capacity()), 0);
  int64_t fresh = 0;
  for (int64_t i = 0; i < n; ++i) {
    slots_[i] = index_.find(keys[i]);
    if (slots_[i] >= 0)
      in_step[static_cast<size_t>(slots_[i])] = 1;
    else
      ++fresh;
  }
  const int64_t room = capacity() - size();
  if (fresh > room) evict_for(fresh - room, in_step);
  for (int64_t i = 0; i < n; ++i) {
    if (slots_[i] >= 0) continue;
    bool inserted = false;
    slots_[i] = index_.insert(keys[i], &inserted);
    if (slots_[i] < 0) {
      ++counters_.dropped;
      continue;
    }
    reset_slot(slots_[i]);
    ++counters_.inserted;
  }

  // 2. Counts, then the lr update of every stored key.
  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
  const auto update = [&](float lr, int64_t rows, int64_t dim, T* weights, T* s0, T* s1) {
    if (rows == 0) return;
    const int64_t count = rows;
    if (adam) {
      const auto& o = optimizer_;
      kernels::sparse_adam_update<T>(ctx, {lr, o.beta1, o.beta2, o.eps, o.weight_decay}, step,
                                     grad_scale, dim, &count, rows, upd_slots_.data(),
                                     upd_rows_.data(), weights, capacity(), s0, s1);
    } else {
      kernels::sparse_adagrad_update<T>(ctx, {lr, optimizer_.eps}, grad_scale, dim, &count, rows,
                                        upd_slots_.data(), upd_rows_.data(), weights, capacity(),
                                        s0);
    }
  };
  upd_slots_.clear();
  upd_rows_.clear();
  for (int64_t i = 0; i < n; ++i) {
    if (slots_[i] < 0) continue;
    const T* r = rec + i * width;
    update_stats(accessor_, stats_[static_cast<size_t>(slots_[i])], static_cast<float>(r[0]),
                 static_cast<float>(r[1]));
    upd_slots_.push_back(static_cast<uint64_t>(slots_[i]));
    upd_rows_.push_back(r[2]);
  }
  update(accessor_.lr_learning_rate, static_cast<int64_t>(upd_slots_.size()), 1, lr_.data(),
         lr_state0_.data(),
         adam ? lr_state1_.data() : nullptr);

  // 3. embedx: updated where it existed before this step; created where the score now admits.
  upd_slots_.clear();
  upd_rows_.clear();
  for (int64_t i = 0; i < n; ++i) {
    if (slots_[i] < 0 || !admitted_[static_cast<size_t>(slots_[i])]) continue;
    const T* r = rec + i * width + kDynamicRecordExtra;
    upd_slots_.push_back(static_cast<uint64_t>(slots_[i]));
    upd_rows_.insert(upd_rows_.end(), r, r + d);
  }
  update(optimizer_.lr, static_cast<int64_t>(upd_slots_.size()), dim_, embedx_.data(),
         embedx_state0_.data(),
         adam ? embedx_state1_.data() : nullptr);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = slots_[i];
    if (slot < 0 || admitted_[static_cast<size_t>(slot)] ||
        !admits_embedx(accessor_, stats_[static_cast<size_t>(slot)]))
      continue;
    admitted_[static_cast<size_t>(slot)] = 1;
    T* row = embedx_.data() + static_cast<size_t>(slot) * d;
    for (int64_t k = 0; k < dim_; ++k)
      row[k] = static_cast<T>(feasign_init_value(seed_, stream_, keys[i], k, init_scale_));
    ++counters_.admitted;
  }
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
void DynamicTable<T>::load_serving(const uint64_t* keys, const T* embedx, int64_t n) {
  LOCKSTEP_CHECK(n <= capacity(), "dynamic table: {} feasigns for a capacity of {}", n,
                 capacity());
  index_.clear();
  const auto d = static_cast<size_t>(dim_);
  for (int64_t i = 0; i < n; ++i) {
    bool inserted = false;
    const int64_t slot = index_.insert(keys[i], &inserted);
    LOCKSTEP_CHECK(inserted, "dynamic table: key {} is given twice", keys[i]);
    reset_slot(slot);
    admitted_[static_cast<size_t>(slot)] = 1;
    std::copy(embedx + static_cast<size_t>(i) * d, embedx + static_cast<size_t>(i + 1) * d,
              embedx_.begin() + static_cast<size_t>(slot) * d);
  }
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
void DynamicTable<T>::to_host(const std::string& name,
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
  out[name + ".lr"] = lr_;
  out[name + ".weight"] = embedx_;
  if (optimizer_.kind == nn::OptimizerKind::Adam) {
    out[name + ".lr_m"] = lr_state0_;
    out[name + ".lr_v"] = lr_state1_;
    out[name + ".m"] = embedx_state0_;
    out[name + ".v"] = embedx_state1_;
  } else {
    out[name + ".lr_accum"] = lr_state0_;
    out[name + ".accum"] = embedx_state0_;
  }
}

template <class T>
void DynamicTable<T>::from_host(const std::string& name,
                                const std::map<std::string, std::vector<T>>& tensors) {
  std::map<std::string, std::vector<T>> like;
  to_host(name, like);
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
    LOCKSTEP_CHECK((f[0] == T(0) || f[0] == T(1)) && (f[1] == T(0) || f[1] == T(1)) &&
                       f[3] >= T(0),
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
  lr_ = tensors.at(name + ".lr");
  embedx_ = tensors.at(name + ".weight");
  if (optimizer_.kind == nn::OptimizerKind::Adam) {
    lr_state0_ = tensors.at(name + ".lr_m");
    lr_state1_ = tensors.at(name + ".lr_v");
    embedx_state0_ = tensors.at(name + ".m");
    embedx_state1_ = tensors.at(name + ".v");
  } else {
    lr_state0_ = tensors.at(name + ".lr_accum");
    embedx_state0_ = tensors.at(name + ".accum");
  }
}

template class DynamicTable<float>;
template class DynamicTable<double>;

}  // namespace lockstep::embedding

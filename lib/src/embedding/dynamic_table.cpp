#include "lockstep/embedding/dynamic_table.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/copy.h"
#include "kernels/feasign.h"
#include "kernels/feasign_store.h"
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
struct DynamicTable<T>::Kernels {
  static kernels::FeasignStore store(const DynamicTable& t) {
    auto* self = const_cast<DynamicTable*>(&t);  // the kernels' view; const methods only read it
    kernels::FeasignStore s;
    s.capacity = t.capacity_;
    s.mask = t.mask_;
    s.bucket_keys = self->bucket_keys_.data();
    s.bucket_slots = self->bucket_slots_.data();
    s.slot_keys = self->slot_keys_.data();
    s.flags = self->flags_.data();
    s.show = self->show_.data();
    s.click = self->click_.data();
    s.delta = self->delta_.data();
    s.unseen = self->unseen_.data();
    s.free_slots = self->free_slots_.data();
    s.meta = self->meta_.data();
    return s;
  }
  static kernels::FeasignRules rules(const DynamicTable& t) {
    const AccessorConfig& a = t.accessor_;
    kernels::FeasignRules r;
    r.nonclk_coeff = a.nonclk_coeff;
    r.click_coeff = a.click_coeff;
    r.embedx_threshold = a.embedx_threshold;
    r.decay = a.show_click_decay_rate;
    r.delete_threshold = a.delete_threshold;
    r.delete_after_unseen_days = a.delete_after_unseen_days;
    return r;
  }
  static kernels::FeasignRows<T> rows(DynamicTable& t) {
    const bool adam = t.optimizer_.kind == nn::OptimizerKind::Adam;
    kernels::FeasignRows<T> r;
    r.dim = t.dim_;
    r.adam = adam;
    r.acc0 = adam ? T(0) : T(t.optimizer_.initial_accumulator);
    r.lr = t.lr_.data();
    r.lr_s0 = t.lr_state0_.data();
    r.lr_s1 = adam ? t.lr_state1_.data() : nullptr;
    r.embedx = t.embedx_.data();
    r.x_s0 = t.embedx_state0_.data();
    r.x_s1 = adam ? t.embedx_state1_.data() : nullptr;
    return r;
  }
};

template <class T>
DynamicTable<T>::DynamicTable(const Context& ctx, int64_t capacity, int64_t dim, float init_scale,
                              const AccessorConfig& accessor, int64_t shrink_every_steps,
                              const nn::OptimizerConfig& optimizer, uint64_t seed, uint64_t stream)
    : capacity_(capacity),
      dim_(dim),
      init_scale_(init_scale),
      accessor_(accessor),
      shrink_every_steps_(shrink_every_steps),
      optimizer_(optimizer),
      seed_(seed),
      stream_(stream),
      on_cpu_(ctx.is_cpu()) {
  LOCKSTEP_CHECK(capacity >= 1 && capacity <= (int64_t{1} << 40),
                 "key index capacity {} is out of range: must be in [1, 1099511627776]", capacity);
  const int64_t buckets = kernels::key_index_buckets(capacity);
  mask_ = buckets - 1;
  bucket_keys_.resize(ctx, {buckets});
  bucket_slots_.resize(ctx, {buckets});
  slot_keys_.resize(ctx, {capacity});
  free_slots_.resize(ctx, {capacity});
  meta_.resize(ctx, {kernels::kFeasignMetaWords});
  flags_.resize(ctx, {capacity});
  for (auto* t : {&show_, &click_, &delta_}) t->resize(ctx, {capacity});
  unseen_.resize(ctx, {capacity});
  kernels::feasign_clear<T>(ctx, Kernels::store(*this));

  const bool adam = optimizer_.kind == nn::OptimizerKind::Adam;
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
const int64_t* DynamicTable<T>::read_meta(const Context& ctx) const {
  host_meta_.resize(static_cast<size_t>(meta_.numel()));
  lockstep::to_host(ctx, meta_.data(), meta_.numel(), host_meta_.data());
  return host_meta_.data();
}

template <class T>
void DynamicTable<T>::sync_host(const Context& ctx) const {
  if (view_fresh_) return;
  const auto cap = static_cast<size_t>(capacity_);
  const std::vector<uint64_t> keys = lockstep::to_host(ctx, slot_keys_);
  const std::vector<uint8_t> flags = lockstep::to_host(ctx, flags_);
  const std::vector<float> show = lockstep::to_host(ctx, show_),
                           click = lockstep::to_host(ctx, click_),
                           delta = lockstep::to_host(ctx, delta_);
  const std::vector<int32_t> unseen = lockstep::to_host(ctx, unseen_);
  const int64_t* meta = read_meta(ctx);
  auto v = std::make_unique<View>(capacity_);
  std::vector<uint8_t> used(cap);
  v->stats.resize(cap);
  v->admitted.resize(cap);
  for (size_t s = 0; s < cap; ++s) {
    used[s] = flags[s] & kernels::kFeasignHeld;
    v->admitted[s] = used[s] && (flags[s] & kernels::kFeasignAdmitted) ? 1 : 0;
    FeasignStats& st = v->stats[s];
    st.show = show[s];
    st.click = click[s];
    st.delta_score = delta[s];
    st.unseen_days = unseen[s];
    st.seen = (flags[s] & kernels::kFeasignSeen) != 0;
  }
  v->index.restore(keys.data(), used.data());
  DynamicCounters& c = v->counters;
  c.inserted = meta[kernels::kMetaInserted];
  c.admitted = meta[kernels::kMetaAdmitted];
  c.evicted = meta[kernels::kMetaEvicted];
  c.dropped = meta[kernels::kMetaDropped];
  c.deleted = meta[kernels::kMetaDeleted];
  c.shrinks = shrinks_;
  view_ = std::move(v);
  view_fresh_ = true;
}

template <class T>
const typename DynamicTable<T>::View& DynamicTable<T>::view() const {
  if (!view_fresh_) {
    LOCKSTEP_CHECK(on_cpu_,
                   "dynamic table: its host view is older than the table on the device: call "
                   "sync_host(ctx) first");
    sync_host(Context{});  // host memory: a CPU context reads it
  }
  return *view_;
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
void DynamicTable<T>::gather(const Context& ctx, const uint64_t* keys, int64_t n, T* embedx, T* lr,
                             const int64_t* count) const {
  // One index array from the device's key index: the embedx row of each key (-1: zeros), then
  // its lr row (-1: zero).
  if (n <= 0) return;
  gather_index_.resize(ctx, {2 * n});
  kernels::feasign_gather_index<T>(ctx, Kernels::store(*this), n, count, keys,
                                   gather_index_.data());
  kernels::gather_rows<T>(ctx, n, dim_, embedx_.data(), dim_, capacity(), gather_index_.data(),
                          embedx, dim_);
  kernels::gather_rows<T>(ctx, n, 1, lr_.data(), 1, capacity(), gather_index_.data() + n, lr, 1);
}

template <class T>
void DynamicTable<T>::update_rows(const Context& ctx, float lr, int64_t dim, const int64_t* count,
                                  const uint64_t* ids, int64_t n, const T* grads, T grad_scale,
                                  int64_t step, T* weights, T* s0, T* s1) {
  const auto& o = optimizer_;
  if (o.kind == nn::OptimizerKind::Adam)
    kernels::sparse_adam_update<T>(ctx, {lr, o.beta1, o.beta2, o.eps, o.weight_decay}, step,
                                   grad_scale, dim, count, n, ids, grads, weights, capacity(), s0,
                                   s1);
  else
    kernels::sparse_adagrad_update<T>(ctx, {lr, o.eps}, grad_scale, dim, count, n, ids, grads,
                                      weights, capacity(), s0);
}

template <class T>
void DynamicTable<T>::apply(const Context& ctx, const SparseGrad<T>& grad, T grad_scale,
                            int64_t step) {
  if (!grad.ready()) return after_update(ctx, step);
  const int64_t width = dim_ + kDynamicRecordExtra;
  LOCKSTEP_CHECK(grad.dim() == width,
                 "dynamic table: a gradient of width {} for records of width {}", grad.dim(),
                 width);
  // The merged gradient's count is on the device; n bounds it.
  const int64_t n = grad.capacity();
  const kernels::FeasignStore store = Kernels::store(*this);
  const kernels::FeasignRows<T> rows = Kernels::rows(*this);
  slots_.resize(ctx, {n});
  rank_.resize(ctx, {n});
  changed();

  // 1. Slots of held keys; ranks of the new ones among them (in key order).
  kernels::feasign_find<T>(ctx, store, n, grad.count(), grad.ids(), slots_.data(), rank_.data());
  // 2. Eviction, when the held feasigns and the new keys may exceed the capacity: the lowest
  // scores not in this step leave (decided from two counters read back).
  if (size_bound_ + n > capacity_) {
    const int64_t* meta = read_meta(ctx);
    const int64_t size = meta[kernels::kMetaSize], fresh = meta[kernels::kMetaNew];
    kernels::feasign_evict<T>(ctx, store, Kernels::rules(*this),
                              std::max<int64_t>(0, fresh - (capacity_ - size)));
    size_bound_ = std::min(capacity_, size + fresh);
  } else {
    size_bound_ += n;
  }
  // 3. New keys take the lowest free slots; their rows start afresh.
  kernels::feasign_place<T>(ctx, store, rows, n, grad.count(), grad.ids(), slots_.data(),
                            rank_.data());
  // 4. Counts, admission, the update lists; then every stored key's lr learns, and embedx where
  // it existed before this step.
  lr_ids_.resize(ctx, {n});
  lr_grads_.resize(ctx, {n});
  x_ids_.resize(ctx, {n});
  x_grads_.resize(ctx, {n * std::max<int64_t>(dim_, 1)});
  lists_.resize(ctx, {2});
  kernels::FeasignRecords rec;
  rec.width = width;
  rec.seed = seed_;
  rec.stream = stream_;
  rec.init_scale = init_scale_;
  kernels::feasign_count<T>(ctx, store, Kernels::rules(*this), rows, rec, n, grad.count(),
                            grad.ids(), slots_.data(), grad.rows(), lr_ids_.data(),
                            lr_grads_.data(), x_ids_.data(), x_grads_.data(), lists_.data());
  update_rows(ctx, accessor_.lr_learning_rate, 1, lists_.data(), lr_ids_.data(), n,
              lr_grads_.data(), grad_scale, step, rows.lr, rows.lr_s0, rows.lr_s1);
  update_rows(ctx, optimizer_.lr, dim_, lists_.data() + 1, x_ids_.data(), n, x_grads_.data(),
              grad_scale, step, rows.embedx, rows.x_s0, rows.x_s1);
  after_update(ctx, step);
}

template <class T>
void DynamicTable<T>::after_update(const Context& ctx, int64_t step) {
  if (shrink_every_steps_ > 0 && step % shrink_every_steps_ == 0) shrink(ctx);
}

template <class T>
int64_t DynamicTable<T>::shrink(const Context& ctx) {
  // A boundary reads the counters twice: the deletions, and whether tombstones have piled up.
  const int64_t deleted_before = read_meta(ctx)[kernels::kMetaDeleted];
  changed();
  kernels::feasign_shrink<T>(ctx, Kernels::store(*this), Kernels::rules(*this));
  const int64_t* meta = read_meta(ctx);
  if (meta[kernels::kMetaTombstones] * 4 > mask_ + 1) {
    kernels::feasign_rebuild<T>(ctx, Kernels::store(*this));
  }
  size_bound_ = meta[kernels::kMetaSize];
  ++shrinks_;
  return meta[kernels::kMetaDeleted] - deleted_before;
}

template <class T>
void DynamicTable<T>::load_serving(const Context& ctx, const uint64_t* keys, const T* embedx,
                                   int64_t n) {
  LOCKSTEP_CHECK(n <= capacity(), "dynamic table: {} feasigns for a capacity of {}", n, capacity());
  {
    KeyIndex index(capacity());
    for (int64_t i = 0; i < n; ++i) {
      bool inserted = false;
      index.insert(keys[i], &inserted);
      LOCKSTEP_CHECK(inserted, "dynamic table: key {} is given twice", keys[i]);
    }
  }
  // Row i is slot i: held and admitted, fresh statistics.
  const auto cap = static_cast<size_t>(capacity_);
  std::vector<uint64_t> slot_keys(cap, 0);
  std::copy(keys, keys + n, slot_keys.begin());
  std::vector<uint8_t> flags(cap, 0);
  std::fill(flags.begin(), flags.begin() + n, kernels::kFeasignHeld | kernels::kFeasignAdmitted);
  changed();
  kernels::feasign_clear<T>(ctx, Kernels::store(*this));
  upload(ctx, slot_keys, slot_keys_, {capacity_});
  upload(ctx, flags, flags_, {capacity_});
  kernels::feasign_rebuild<T>(ctx, Kernels::store(*this));
  size_bound_ = n;
  kernels::fill_constant<T>(ctx, lr_.numel(), T(0), lr_.data());
  kernels::fill_constant<T>(ctx, embedx_.numel(), T(0), embedx_.data());
  if (n > 0)
    copy_bytes(ctx, embedx_.data(), ctx.device(), embedx, Device::cpu(),
               static_cast<size_t>(n * dim_) * sizeof(T));
}

template <class T>
std::vector<int64_t> DynamicTable<T>::export_slots(bool delta) const {
  const View& v = view();
  std::vector<int64_t> out;
  for (int64_t s = 0; s < capacity(); ++s) {
    if (!v.index.occupied(s)) continue;
    const FeasignStats& st = v.stats[static_cast<size_t>(s)];
    if (delta ? in_delta(accessor_, st) : in_base(accessor_, st)) out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [&](int64_t a, int64_t b) { return v.index.key_of(a) < v.index.key_of(b); });
  return out;
}

template <class T>
void DynamicTable<T>::mark_saved(const Context& ctx, bool delta) {
  changed();
  kernels::feasign_mark_saved<T>(ctx, Kernels::store(*this), Kernels::rules(*this),
                                 accessor_.base_threshold, accessor_.delta_threshold,
                                 accessor_.delta_keep_days, delta);
}

template <class T>
void DynamicTable<T>::to_host(const Context& ctx, const std::string& name,
                              std::map<std::string, std::vector<T>>& out) const {
  sync_host(ctx);
  const View& v = *view_;
  const auto cap = static_cast<size_t>(capacity());
  static_assert(8 % sizeof(T) == 0, "a key is a whole number of values");
  constexpr size_t per_key = 8 / sizeof(T);
  std::vector<T> keys(cap * per_key), feasign(cap * kFeasignColumns);
  for (size_t s = 0; s < cap; ++s) {
    const bool held = v.index.occupied(static_cast<int64_t>(s));
    const uint64_t key = held ? v.index.key_of(static_cast<int64_t>(s)) : 0;
    std::memcpy(keys.data() + s * per_key, &key, 8);
    const FeasignStats& st = v.stats[s];
    T* f = feasign.data() + s * kFeasignColumns;
    f[0] = held ? T(1) : T(0);
    f[1] = held && v.admitted[s] ? T(1) : T(0);
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
  std::vector<uint8_t> used(cap), flags(cap);
  std::vector<float> show(cap), click(cap), delta(cap);
  std::vector<int32_t> unseen(cap);
  for (size_t s = 0; s < cap; ++s) {
    std::memcpy(&slot_keys[s], keys.data() + s * per_key, 8);
    const T* f = feasign.data() + s * kFeasignColumns;
    LOCKSTEP_CHECK((f[0] == T(0) || f[0] == T(1)) && (f[1] == T(0) || f[1] == T(1)) && f[3] >= T(0),
                   "embedding tensor '{}.feasign': slot {} is malformed", name, s);
    used[s] = f[0] == T(1) ? 1 : 0;
    if (!used[s]) slot_keys[s] = 0;
    flags[s] = static_cast<uint8_t>((used[s] ? kernels::kFeasignHeld : 0) |
                                    (used[s] && f[1] == T(1) ? kernels::kFeasignAdmitted : 0) |
                                    (f[2] != T(0) ? kernels::kFeasignSeen : 0));
    unseen[s] = static_cast<int32_t>(f[3]);
    show[s] = static_cast<float>(f[4]);
    click[s] = static_cast<float>(f[5]);
    delta[s] = static_cast<float>(f[6]);
  }
  KeyIndex(capacity()).restore(slot_keys.data(), used.data());  // throws for a key held twice
  // Everything checked: now overwrite.
  changed();
  upload(ctx, slot_keys, slot_keys_, {capacity_});
  upload(ctx, flags, flags_, {capacity_});
  upload(ctx, show, show_, {capacity_});
  upload(ctx, click, click_, {capacity_});
  upload(ctx, delta, delta_, {capacity_});
  upload(ctx, unseen, unseen_, {capacity_});
  kernels::feasign_rebuild<T>(ctx, Kernels::store(*this));
  size_bound_ = read_meta(ctx)[kernels::kMetaSize];
  for (const auto& [suffix, t] : row_tensors(*this)) {
    const std::vector<T>& v = tensors.at(name + suffix);
    copy_bytes(ctx, t->data(), ctx.device(), v.data(), Device::cpu(), v.size() * sizeof(T));
  }
}

template class DynamicTable<float>;
template class DynamicTable<double>;

}  // namespace lockstep::embedding

#pragma once
// DynamicTable: the feasign store behind an embedding table of kind "dynamic" (issue 13,
// docs/feasign_store.md). 64-bit keys map to slots without collisions (KeyIndex); each held
// feasign has its statistics (show, click, delta score, unseen days), a 1-dim `lr` weight that
// learns from its first update, and an `embedx` vector created only when the feasign is admitted
// (score >= embedx_threshold), each with its optimizer state. Feasigns are inserted when a step's
// merged gradient first carries them, evicted lowest score first when the table is full, and
// deleted at a shrink boundary by the accessor's rules.
//
// The table never decides anything from one rank's data: apply() takes the step's MERGED keyed
// gradient (every rank's records summed per key by the sparse exchange, identical on every
// replica), so every replica makes the same inserts, admissions, evictions and updates and stays
// bitwise identical.
//
// Where things live: everything in the context's memory. The decisions (the key index, the
// statistics, the admitted flags, the free slots: kernels/feasign_store.h) and the rows (lr,
// embedx and their optimizer state: kernels/feasign.h and the sparse optimizers) change only
// through kernels with a CPU reference, so a CPU and a CUDA context run the same operations and
// agree bitwise on the key -> slot map and the statistics. A step needs no host round trip:
// gather() reads the batch's distinct keys staged on the device (DeviceBatch::staged_keys);
// apply() launches kernels only, except when the held
// feasigns and the step's keys may exceed the capacity (then it reads two counters to decide on
// eviction). The host's view (index(), stats(), admitted(), counters(), export_slots()) is a
// copy, refreshed by sync_host(ctx) on a device and by itself on the CPU.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/core/context.h"
#include "lockstep/core/tensor.h"
#include "lockstep/embedding/feasign_accessor.h"
#include "lockstep/embedding/key_index.h"
#include "lockstep/embedding/sparse_grad.h"
#include "lockstep/nn/optimizer.h"

namespace lockstep::embedding {

/// The record a dynamic table's sparse gradient carries per key: [show, click, d lr, d embedx
/// (dim values)], so a row is dim + kDynamicRecordExtra wide. show and click are counts (not
/// scaled by the step's 1 / samples); the gradients are sums over the batch like a hashed
/// table's.
inline constexpr int64_t kDynamicRecordExtra = 3;

/// What a dynamic table has done since it was created (not checkpointed: a report).
struct DynamicCounters {
  int64_t inserted = 0;  // feasigns created
  int64_t admitted = 0;  // embedx vectors created
  int64_t evicted = 0;   // feasigns removed to make room for new ones (lowest score first)
  int64_t dropped = 0;   // new feasigns not stored: the table was full of this step's feasigns
  int64_t deleted = 0;   // feasigns removed by shrink()
  int64_t shrinks = 0;   // boundaries applied
};

template <class T>
class DynamicTable {
 public:
  /// `capacity` feasigns of `dim`; `accessor` the rules; `optimizer` (adagrad or adam) updates
  /// lr and embedx alike; initial embedx values feasign_init_value(seed, stream, key, d,
  /// init_scale); lr starts at 0. shrink_every_steps > 0: apply() shrinks after every update
  /// whose step is a multiple of it.
  /// The rows are allocated in ctx's memory.
  DynamicTable(const Context& ctx, int64_t capacity, int64_t dim, float init_scale,
               const AccessorConfig& accessor, int64_t shrink_every_steps,
               const nn::OptimizerConfig& optimizer, uint64_t seed, uint64_t stream);

  int64_t capacity() const { return capacity_; }
  int64_t dim() const { return dim_; }
  const AccessorConfig& accessor() const { return accessor_; }

  /// The host's view of the decisions, a copy of the context's state. On a device it is
  /// refreshed by sync_host(ctx), and the accessors below throw Error when it is older than the
  /// last change; on the CPU they refresh it themselves.
  void sync_host(const Context& ctx) const;
  int64_t size() const { return view().index.size(); }
  const KeyIndex& index() const { return view().index; }
  const DynamicCounters& counters() const { return view().counters; }
  /// Per slot (held: index().occupied(slot)).
  const FeasignStats& stats(int64_t slot) const { return view().stats[static_cast<size_t>(slot)]; }
  bool admitted(int64_t slot) const { return view().admitted[static_cast<size_t>(slot)] != 0; }
  /// The lr weight of a slot: a table on a CPU context only (Error otherwise; use values()).
  T lr(int64_t slot) const;
  /// The embedx vectors (capacity × dim; zero for a feasign not admitted) and the lr weights
  /// (capacity), in ctx's memory.
  T* embedx() { return embedx_.data(); }
  const T* embedx() const { return embedx_.data(); }
  T* lr_weights() { return lr_.data(); }

  /// Host copies of the lr weights (slots.size()) and embedx rows (slots.size() × dim) of slots.
  std::pair<std::vector<T>, std::vector<T>> values(const Context& ctx,
                                                  const std::vector<int64_t>& slots) const;

  /// The forward's view of n keys (ctx's memory): embedx rows (n × dim; zero for a key not held
  /// or not admitted) and lr weights (n; zero for a key not held), written to ctx's memory.
  /// count: how many of the n keys are given (one int64 in ctx's memory; rows past it are
  /// zeros), or nullptr: all n — so a caller who knows only a bound on the host needs no read.
  void gather(const Context& ctx, const uint64_t* keys, int64_t n, T* embedx, T* lr,
              const int64_t* count = nullptr) const;

  /// Applies a merged keyed gradient (ids: distinct keys in ascending order; rows of dim +
  /// kDynamicRecordExtra): new keys inserted (evicting the lowest-score feasigns not in this
  /// step when full), show/click counted, lr updated for every key, embedx for feasigns
  /// admitted before this step, then newly admitted feasigns get their initial embedx. Then,
  /// when shrink_every_steps divides `step`, shrink().
  void apply(const Context& ctx, const SparseGrad<T>& grad, T grad_scale, int64_t step);
  /// The end of update `step` when no record reached the table (apply() calls it too): the
  /// shrink every shrink_every_steps updates happens whether or not the step touched the table.
  void after_update(const Context& ctx, int64_t step);

  /// A boundary: decay, unseen days, deletion (feasign_accessor.h). Returns the feasigns deleted.
  int64_t shrink(const Context& ctx);

  /// The slots a base (delta = false) or delta export carries (in_base / in_delta), in
  /// ascending key order (the host's view: sync_host() first on a device).
  std::vector<int64_t> export_slots(bool delta) const;
  /// After a successful export of that kind: the delta score of what it carried is reset.
  void mark_saved(const Context& ctx, bool delta);

  /// Serving: the table holds exactly `n` admitted feasigns, keys[i] with embedx row i (n ×
  /// dim, host memory), lr 0 (an exported student reads embedx only). Throws Error when n >
  /// capacity() or a key is given twice.
  void load_serving(const Context& ctx, const uint64_t* keys, const T* embedx, int64_t n);

  /// Host tensors by name, for checkpoints: "<name>.keys" (the slot -> key map as U64 bit
  /// patterns, two floats per key: see is_u64_tensor()), "<name>.feasign" (capacity × 7: held,
  /// admitted, seen, unseen_days, show, click, delta_score), "<name>.lr", "<name>.weight"
  /// (embedx) and the optimizer state of both ("<name>.lr_accum" + "<name>.accum", or
  /// "<name>.lr_m/lr_v" + "<name>.m/v").
  void to_host(const Context& ctx, const std::string& name,
               std::map<std::string, std::vector<T>>& out) const;
  /// Restores what to_host() produced: everything checked first (sizes, the key map), then
  /// assigned. Throws Error naming the tensor.
  void from_host(const Context& ctx, const std::string& name,
                 const std::map<std::string, std::vector<T>>& tensors);

 private:
  /// The host's view: index, statistics, admitted flags, counters.
  struct View {
    explicit View(int64_t capacity) : index(capacity) {}
    KeyIndex index;
    std::vector<FeasignStats> stats;
    std::vector<uint8_t> admitted;
    DynamicCounters counters;
  };
  const View& view() const;
  /// The context's state changed: the host's view is stale.
  void changed() { view_fresh_ = false; }
  /// The kernels' views of this table (kernels/feasign_store.h; defined in the .cpp).
  struct Kernels;
  /// The host copy of the store's counters (one read), in host_meta_.
  const int64_t* read_meta(const Context& ctx) const;
  /// The optimizer step of the rows listed by ids (count of them in ctx memory, at most n).
  void update_rows(const Context& ctx, float lr, int64_t dim, const int64_t* count,
                   const uint64_t* ids, int64_t n, const T* grads, T grad_scale, int64_t step,
                   T* weights, T* s0, T* s1);

  int64_t capacity_, dim_;
  float init_scale_;
  AccessorConfig accessor_;
  int64_t shrink_every_steps_;
  nn::OptimizerConfig optimizer_;
  uint64_t seed_, stream_;
  bool on_cpu_;
  // ctx's part: the decisions (kernels/feasign_store.h) ...
  int64_t mask_;
  Tensor<uint64_t> bucket_keys_, slot_keys_;
  Tensor<int64_t> bucket_slots_, free_slots_, meta_;
  Tensor<uint8_t> flags_;
  Tensor<float> show_, click_, delta_;
  Tensor<int32_t> unseen_;
  // ... and the rows.
  Tensor<T> lr_, lr_state0_, lr_state1_;                // (capacity)
  Tensor<T> embedx_, embedx_state0_, embedx_state1_;    // (capacity, dim); adagrad: (capacity)
  // The host's side: its view, and a bound on the feasigns held (exact after each read of the
  // counters, grown by each step's record bound), which says when eviction may be needed.
  mutable std::unique_ptr<View> view_;
  mutable bool view_fresh_ = false;
  int64_t size_bound_ = 0, shrinks_ = 0;
  mutable std::vector<int64_t> host_meta_;
  // Scratch of a step (ctx memory): gather()'s indices, apply()'s slots, ranks and update lists.
  mutable Tensor<int64_t> gather_index_;
  Tensor<int64_t> slots_, rank_, lists_;
  Tensor<uint64_t> lr_ids_, x_ids_;
  Tensor<T> lr_grads_, x_grads_;

  /// The rows' tensors by checkpoint suffix (".lr", ".weight", the optimizer state).
  /// (Self: this table, const or not.)
  template <class Self>
  static auto row_tensors(Self& self) -> std::vector<std::pair<std::string, decltype(&self.lr_)>>;
};

/// Whether a host tensor of a table holds U64 values as float bit patterns (two floats per
/// value): names ending in ".keys". Checkpoints store such tensors as U64.
bool is_u64_tensor(const std::string& name);

extern template class DynamicTable<float>;
extern template class DynamicTable<double>;

}  // namespace lockstep::embedding

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
// Where things live: the decisions are made on the host (the key index, the statistics, the
// admitted flags: a few bytes per feasign), the rows (lr, embedx and their optimizer state) live
// in the context's memory and move only through the kernels of kernels/feasign.h and the sparse
// optimizers, so a CPU and a CUDA context run the same operations and agree bitwise. Per step on
// CUDA: gather() uploads one index array; apply() reads the merged gradient's keys and counts
// back once and uploads one plan (slots to reset, to update, to initialise). The device key index
// (DeviceKeyIndex) can take the host's place later (docs/feasign_store.md "On the GPU").

#include <cstdint>
#include <map>
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

  int64_t capacity() const { return index_.capacity(); }
  int64_t dim() const { return dim_; }
  int64_t size() const { return index_.size(); }
  const KeyIndex& index() const { return index_; }
  const AccessorConfig& accessor() const { return accessor_; }
  const DynamicCounters& counters() const { return counters_; }

  /// Per slot (held: index().occupied(slot)).
  const FeasignStats& stats(int64_t slot) const { return stats_[static_cast<size_t>(slot)]; }
  bool admitted(int64_t slot) const { return admitted_[static_cast<size_t>(slot)] != 0; }
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

  /// The forward's view of n keys (host memory): embedx rows (n × dim; zero for a key not held
  /// or not admitted) and lr weights (n; zero for a key not held), written to ctx's memory.
  void gather(const Context& ctx, const uint64_t* keys, int64_t n, T* embedx, T* lr) const;

  /// Applies a merged keyed gradient (ids: distinct keys in ascending order; rows of dim +
  /// kDynamicRecordExtra): new keys inserted (evicting the lowest-score feasigns not in this
  /// step when full), show/click counted, lr updated for every key, embedx for feasigns
  /// admitted before this step, then newly admitted feasigns get their initial embedx. Then,
  /// when shrink_every_steps divides `step`, shrink().
  void apply(const Context& ctx, const SparseGrad<T>& grad, T grad_scale, int64_t step);
  /// The end of update `step` when no record reached the table (apply() calls it too): the
  /// shrink every shrink_every_steps updates happens whether or not the step touched the table.
  void after_update(int64_t step);

  /// A boundary: decay, unseen days, deletion (feasign_accessor.h). Returns the feasigns deleted.
  int64_t shrink();

  /// The slots a base (delta = false) or delta export carries (in_base / in_delta), in
  /// ascending key order.
  std::vector<int64_t> export_slots(bool delta) const;
  /// After a successful export of that kind: the delta score of what it carried is reset.
  void mark_saved(bool delta);

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
  void evict_for(int64_t needed);
  /// The rows of `n` slots (ctx memory) start afresh: lr 0, embedx 0, optimizer state initial.
  void reset_rows(const Context& ctx, const int64_t* slots, int64_t n);
  /// The optimizer step of `n` rows of `dim`: ids (slots) and count in ctx memory, grads (n, dim).
  void update_rows(const Context& ctx, float lr, int64_t dim, const int64_t* count,
                   const uint64_t* slots, int64_t n, const T* grads, T grad_scale, int64_t step,
                   T* weights, T* s0, T* s1);

  int64_t dim_;
  float init_scale_;
  AccessorConfig accessor_;
  int64_t shrink_every_steps_;
  nn::OptimizerConfig optimizer_;
  uint64_t seed_, stream_;
  bool on_cpu_;
  // The host's part: the decisions.
  KeyIndex index_;
  std::vector<FeasignStats> stats_;
  std::vector<uint8_t> admitted_;
  // ctx's part: the rows.
  Tensor<T> lr_, lr_state0_, lr_state1_;                // (capacity)
  Tensor<T> embedx_, embedx_state0_, embedx_state1_;    // (capacity, dim); adagrad: (capacity)
  DynamicCounters counters_;
  // Scratch: gather()'s indices, apply()'s counts, plan and gathered gradients (ctx memory).
  mutable Tensor<int64_t> gather_index_;
  Tensor<T> counts_, grads_;
  Tensor<uint64_t> plan_;
  std::vector<int64_t> slots_;
  // Host scratch of apply(), gather() and evict_for(), kept between steps: once the shapes
  // repeat, a step allocates nothing. in_step (capacity) is all 0 between steps.
  struct HostScratch {
    std::vector<uint64_t> words, plan, reset, lr_slots, lr_recs, x_slots, x_recs, admit_slots,
        admit_keys;
    std::vector<T> counts;
    std::vector<uint8_t> in_step;
    std::vector<int64_t> index, candidates;
  };
  mutable HostScratch host_;

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

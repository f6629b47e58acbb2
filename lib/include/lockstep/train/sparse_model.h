#pragma once
// Base/delta export of a model's dynamic tables (issue 13, docs/feasign_store.md "Base and delta
// export"), and the serving tables loaded from such exports.
//
// Layout: DIR/base-<n>/ and DIR/delta-<n>/ (n: 6 or more digits, one sequence for both kinds),
// each written atomically (a temporary directory renamed into place) and holding one safetensors
// file per dynamic table, "<table>.safetensors", with tensors
//   keys (U64, N), lr (F32, N), embedx (F32, N × dim; zero rows where has_embedx is 0),
//   has_embedx (U8, N), show (F32, N), click (F32, N)
// (keys ascending), and a sealed manifest.json: format, version, kind, sequence, the base a delta
// follows, the training step, per table its dim and feasign count, and every file's size and
// XXH64. A base carries every feasign with score >= base_threshold; a delta those that also
// gained delta_score >= delta_threshold since the previous save and were seen within
// delta_keep_days boundaries. Loading a base and the deltas written after it gives the model.

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "lockstep/models/model.h"

namespace lockstep::train {

enum class SparseSaveKind { Base, Delta };
const char* sparse_save_kind_name(SparseSaveKind kind);

struct SparseSaveInfo {
  std::string path;                          // the directory written
  int64_t sequence = 0;                      // its n
  std::map<std::string, int64_t> feasigns;   // per table: feasigns written
};

/// Writes the model's dynamic tables into DIR/<kind>-<n>/, n = 1 + the largest n in DIR (DIR is
/// created when missing). A delta records the newest base in DIR (0: none yet; loading skips
/// deltas older than the newest base). Leaves the model unchanged: after the write succeeded,
/// call mark_sparse_saved() on every rank. Throws Error naming the path (the model has no
/// dynamic table, an I/O failure: nothing is left under the final name).
SparseSaveInfo write_sparse_model(const Context& ctx, const std::string& dir, SparseSaveKind kind,
                                  models::Model<float>& model, int64_t step);

/// After a successful save, on every rank (replicas stay identical): the delta score of every
/// feasign that save carried starts again from 0.
void mark_sparse_saved(const Context& ctx, SparseSaveKind kind, models::Model<float>& model);

/// One dynamic table as served: key -> its lr weight and embedx (or none, before admission).
struct SparseServingTable {
  std::string name;
  int64_t dim = 0;
  std::vector<uint64_t> keys;      // (N), in the order rows were added
  std::vector<float> lr, embedx;   // (N), (N, dim)
  std::vector<uint8_t> has_embedx;
  std::vector<float> show, click;
  std::unordered_map<uint64_t, int64_t> rows;  // key -> row
  int64_t size() const { return static_cast<int64_t>(keys.size()); }
  /// Writes the key's embedx (zeros when not held or not admitted) and lr weight (0 when not
  /// held); returns whether the key is held.
  bool lookup(uint64_t key, float* embedx_out, float* lr_out) const;
};

struct SparseModel {
  std::string dir;
  int64_t base = 0;             // the sequence number of the base loaded
  std::vector<int64_t> deltas;  // ... and of the deltas applied after it, in order
  std::map<std::string, SparseServingTable> tables;
};

/// Loads the newest base of DIR and every delta written after it, in sequence order (a delta's
/// rows replace the earlier ones of their keys). Every manifest and file is verified first.
/// Throws Error naming the directory or file (no base, a corrupted or truncated file, a delta
/// whose tables or dims differ from the base's).
SparseModel load_sparse_model(const std::string& dir);

}  // namespace lockstep::train

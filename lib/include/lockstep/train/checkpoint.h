#pragma once
// Checkpoints: everything needed to resume training bitwise where it stopped.
//
// Layout of a checkpoint directory <root>/step-<12 digits>/:
//   manifest.json        format version, model, step counters, epoch position, RNG offset, ranks,
//                        configuration hash, the size and XXH64 of every file below, and last
//                        its own checksum "manifest_xxh64" (format: lib/src/train/
//                        checkpoint_manifest.h; format_version 1, without it, is still read)
//   dense.safetensors    dense parameters and non-trainable state (ParamSet values)
//   optimizer.safetensors dense optimizer state ("m", "v", "velocity" or "accum")
//   tables.safetensors   every embedding table's weights and optimizer state
// It is written under a temporary name, every file and the directory are fsynced, then it is
// renamed into place and <root>/LATEST (the name of the newest checkpoint) is replaced
// atomically. Older checkpoints beyond `keep` are deleted only after that. The temporary
// directory is <root>/.tmp-step-<12 digits>@<host>-<pid>; one left by a killed writer is removed
// by the next write_checkpoint (or remove_stale_checkpoint_temporaries) on that host.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lockstep/models/model.h"

namespace lockstep::train {

struct CheckpointMeta {
  uint64_t step = 0;           // lockstep steps completed (the next step's number)
  uint64_t updates = 0;        // optimizer updates applied
  int64_t epoch = 0;           // epoch in progress
  int64_t step_in_epoch = 0;   // batches each rank consumed in that epoch
  uint64_t random_offset = 0;  // Context::random_offset()
  int ranks = 1;               // ranks of the run that wrote it
  uint64_t config_hash = 0;    // hash of the run configuration (checked on resume)
  std::string model;           // Model::name()
  /// Written on the epoch's last step, before its end (boundary, evaluation): a resume does
  /// that end next instead of looking for more of the epoch's batches.
  bool epoch_complete = false;
  int64_t epoch_samples = 0;  // samples of all ranks trained in the epoch up to this step
};

/// Text files written into a checkpoint besides the model state, and covered by its manifest:
/// "model.toml" and "schema.toml" (the model configuration and the data schema: what rebuilds
/// the model without the run's flags, train/saved_model.h), "selection.json" (the trainer's
/// model-selection state), "follow.txt" (lockstep-train --follow: the files trained and the
/// round in progress) and "config.txt" (what the run's configuration hash covers, as key=value
/// lines: a refused resume names the first difference). Other names are refused.
using CheckpointExtras = std::map<std::string, std::string>;

/// Writes a checkpoint of `model` under `root` (created if missing) and returns its path.
/// Throws Error naming the path on any failure; a failed write leaves earlier checkpoints and
/// LATEST untouched.
std::string write_checkpoint(const std::string& root, const CheckpointMeta& meta,
                             models::Model<float>& model, const Context& ctx, int keep = 2,
                             const CheckpointExtras& extras = {});

/// Writes the same files as the directory `dir` itself (no step-<n> under a root, no LATEST),
/// replacing what was there atomically: a complete model (the trainer's best/, --save).
void write_checkpoint_directory(const std::string& dir, const CheckpointMeta& meta,
                                models::Model<float>& model, const Context& ctx,
                                const CheckpointExtras& extras = {});

/// The extra text file `name` of the checkpoint at `path` ("" when it has none). Call after
/// read_checkpoint() (which verified its checksum) or read_checkpoint_meta().
std::string read_checkpoint_extra(const std::string& path, const std::string& name);

/// The metadata of the checkpoint at `path`, with every file's size and checksum verified,
/// without a model to restore into.
CheckpointMeta read_checkpoint_meta(const std::string& path);

/// Removes the temporary directories that writes of checkpoints into `root` by processes of this
/// host that no longer run (crashed, killed) left behind, with a warning for each, and returns
/// their paths; temporaries of running processes or other hosts stay, with a warning. Never
/// throws. write_checkpoint calls it; the Trainer calls it on rank 0 at start-up.
std::vector<std::string> remove_stale_checkpoint_temporaries(const std::string& root);

/// The newest complete checkpoint under `root` (named by LATEST), or "" when there is none.
std::string latest_checkpoint(const std::string& root);

/// Verifies the checkpoint at `path` completely (manifest, file sizes and checksums, tensor names
/// and shapes against `model`, model name and configuration hash) and only then restores the
/// model, its optimizer and table state. Returns the metadata. A missing, truncated or corrupted
/// checkpoint throws Error naming the file and what is wrong, leaving the model unchanged: also a
/// manifest with a changed byte (checksum mismatch), a missing, mistyped, out-of-range or unknown
/// field (named).
CheckpointMeta read_checkpoint(const std::string& path, models::Model<float>& model,
                               const Context& ctx, uint64_t expected_config_hash);

}  // namespace lockstep::train

#pragma once
// Internal: manifest.json of a checkpoint directory (lockstep/train/checkpoint.h), as text.
//
// format_version 2 (this lockstep writes it):
//   {"format_version": 2, "model": "<Model::name()>", "step": u64, "updates": u64,
//    "epoch": i64 >= 0, "step_in_epoch": i64 >= 0, "random_offset": u64, "ranks": int >= 1,
//    "config_hash": "<16 hex digits>", "optimizer_steps": i64 >= 0,
//    "epoch_samples": i64 >= 0, ["epoch_complete": true,]
//    "files": {"<name>": {"bytes": u64, "xxh64": "<16 hex digits>"}, ...},
//    "manifest_xxh64": "<16 hex digits>"}
// sealed by its last member (io/manifest.h). format_version 1 is the same without the seal; it is
// still read; so are manifests without epoch_samples and epoch_complete (older writers: 0 and
// false). Every other member, a missing one, another type or a value out of range is an
// Error naming the file and the field.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/manifest.h"
#include "lockstep/train/checkpoint.h"

namespace lockstep::train {

constexpr int kCheckpointFormatVersion = 2;

/// The files of a checkpoint directory, in the order they are written.
const std::vector<std::string>& checkpoint_files();
/// The optional text files a checkpoint may hold besides (CheckpointExtras), listed in its
/// manifest when present.
const std::vector<std::string>& checkpoint_extra_files();

struct CheckpointManifest {
  int format_version = kCheckpointFormatVersion;
  CheckpointMeta meta;
  int64_t optimizer_steps = 0;                  // DenseOptimizer::step_count()
  /// checkpoint_files() and those of checkpoint_extra_files() the checkpoint holds
  std::map<std::string, io::FileDigest> files;
};

/// The text of manifest.json for `manifest` (written as kCheckpointFormatVersion, sealed).
std::string checkpoint_manifest_text(const CheckpointManifest& manifest);

/// Parses the bytes of a checkpoint's manifest.json strictly (see above). `path` names the file
/// in messages. Any input gives either the manifest or lockstep::Error: "<path>: checksum
/// mismatch ...", "<path>: not valid JSON: ...", "<path>: field '<name>' is missing", "... must
/// be <type>, got <value>", "... is out of range ...", "... is not known ...", ... — never another
/// exception. Does not read the files it lists.
CheckpointManifest parse_checkpoint_manifest(const std::string& text, const std::string& path);

}  // namespace lockstep::train

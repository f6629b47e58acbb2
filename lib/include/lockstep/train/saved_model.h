#pragma once
// A complete model on disk: what lockstep-eval, lockstep-train --init-from and drivers load
// without the flags of the run that trained it.
//
// A complete model is a checkpoint directory (lockstep/train/checkpoint.h) that also holds
//   model.toml    the model configuration it was built from (docs/configuration.md; presets and
//                 --set overrides applied)
//   schema.toml   the schema of the data it reads (docs/data.md)
// both covered by the manifest's checksums. lockstep-train writes them into every checkpoint,
// into the best model (CHECKPOINT_DIR/best/ or --best-dir) and into --save DIR.

#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/schema.h"
#include "lockstep/models/model.h"
#include "lockstep/train/checkpoint.h"

namespace lockstep::train {

/// The two files that make a checkpoint a complete model (TrainerConfig::model_files).
CheckpointExtras model_files(const std::string& config_toml, const data::Schema& schema);

struct SavedModel {
  std::string path;         // the checkpoint directory read
  CheckpointMeta meta;
  std::string config_toml;  // model.toml
  data::Schema schema;      // schema.toml
  /// Built from model.toml for schema, with every parameter, table and optimizer state loaded.
  std::unique_ptr<models::Model<float>> model;
};

/// Loads the complete model at `path`: a checkpoint directory (step-<n>, best/, --save DIR) or a
/// checkpoint root (the checkpoint its LATEST names). Throws Error naming the path when it is not
/// one (no manifest, a checksum that does not match, no model.toml/schema.toml: a checkpoint of
/// an older lockstep) or the files do not build a model that fits its tensors.
/// `overrides` ("key=value", as lockstep-train --set) edit model.toml before the model is built:
/// for a checkpoint whose model.toml left to the defaults what a later lockstep changed.
SavedModel load_saved_model(const std::string& path, const Context& ctx,
                            const std::vector<std::string>& overrides = {});

/// `path` itself, or the checkpoint a root's LATEST names.
std::string resolve_checkpoint_path(const std::string& path);

}  // namespace lockstep::train

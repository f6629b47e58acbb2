#include "lockstep/train/saved_model.h"

#include <filesystem>

#include "lockstep/models/factory.h"

namespace lockstep::train {

namespace fs = std::filesystem;

CheckpointExtras model_files(const std::string& config_toml, const data::Schema& schema) {
  return {{"model.toml", config_toml}, {"schema.toml", schema.to_toml()}};
}

std::string resolve_checkpoint_path(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(fs::path(path) / "manifest.json", ec) && fs::exists(fs::path(path) / "LATEST", ec))
    return latest_checkpoint(path);
  return path;
}

SavedModel load_saved_model(const std::string& path, const Context& ctx,
                            const std::vector<std::string>& overrides) {
  SavedModel s;
  s.path = resolve_checkpoint_path(path);
  std::error_code ec;
  LOCKSTEP_CHECK(fs::is_directory(s.path, ec),
                 "{}: not a model directory (a checkpoint, best/ or lockstep-train --save)", path);
  const CheckpointMeta meta = read_checkpoint_meta(s.path);  // every checksum, extras included
  s.config_toml = read_checkpoint_extra(s.path, "model.toml");
  const std::string schema_toml = read_checkpoint_extra(s.path, "schema.toml");
  LOCKSTEP_CHECK(!s.config_toml.empty() && !schema_toml.empty(),
                 "{}: a checkpoint without model.toml and schema.toml (written by an older "
                 "lockstep): it holds the parameters but not what builds the model; load it with "
                 "lockstep-train --init-from and the run's --config/--schema instead",
                 s.path);
  if (!overrides.empty())
    s.config_toml = models::apply_overrides(s.config_toml, overrides, s.path + "/model.toml");
  s.schema = data::Schema::parse(schema_toml, s.path + "/schema.toml");
  s.model = models::build_model<float>(s.config_toml, s.path + "/model.toml", s.schema, ctx);
  LOCKSTEP_CHECK(s.model->name() == meta.model,
                 "{}: model.toml builds a {} model, the checkpoint holds a {}", s.path,
                 s.model->name(), meta.model);
  try {
    s.meta = read_checkpoint(s.path, *s.model, ctx, 0);
  } catch (const Error& e) {
    // A model.toml that leaves settings to the defaults builds another model once the defaults
    // change (e.g. the dual model's student residual tables and hint weight, 2026-11).
    throw Error(fmt::format("{}\n  ({}/model.toml builds a model that does not fit this "
                            "checkpoint: written by a lockstep whose defaults differed? Give "
                            "those settings with --set, e.g. for a dual model from before the "
                            "student residual tables: --set "
                            "model.distillation.student_residual_embeddings=false --set "
                            "model.distillation.hint_weight=0.1)",
                            e.what(), s.path));
  }
  return s;
}

}  // namespace lockstep::train

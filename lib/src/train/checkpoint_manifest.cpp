#include "train/checkpoint_manifest.h"

#include <climits>

namespace lockstep::train {

const std::vector<std::string>& checkpoint_files() {
  static const std::vector<std::string> files = {"dense.safetensors", "optimizer.safetensors",
                                                 "tables.safetensors"};
  return files;
}

const std::vector<std::string>& checkpoint_extra_files() {
  static const std::vector<std::string> files = {"model.toml", "schema.toml", "selection.json",
                                                 "follow.txt", "config.txt"};
  return files;
}

std::string checkpoint_manifest_text(const CheckpointManifest& c) {
  const CheckpointMeta& meta = c.meta;
  nlohmann::ordered_json m;
  m["format_version"] = kCheckpointFormatVersion;
  m["model"] = meta.model;
  m["step"] = meta.step;
  m["updates"] = meta.updates;
  m["epoch"] = meta.epoch;
  m["step_in_epoch"] = meta.step_in_epoch;
  m["random_offset"] = meta.random_offset;
  m["ranks"] = meta.ranks;
  m["config_hash"] = fmt::format("{:016x}", meta.config_hash);
  m["optimizer_steps"] = c.optimizer_steps;
  m["epoch_samples"] = meta.epoch_samples;
  if (meta.epoch_complete) m["epoch_complete"] = true;
  m["files"] = io::files_json(c.files);
  return io::seal_manifest(m);
}

CheckpointManifest parse_checkpoint_manifest(const std::string& text, const std::string& path) {
  const bool sealed = io::check_manifest_seal(text, path);
  const nlohmann::json json = io::parse_json(text, path);
  io::JsonFields m(json, path);
  if (json.is_object() && !json.contains("format_version") && json.contains("format") &&
      json.at("format").is_string())
    throw Error(fmt::format(
        "{}: the manifest of a {} (format {}), not of a checkpoint or saved "
        "model{}",
        path, json.at("format") == "lockstep-student-bundle" ? "student bundle" : "another export",
        io::quote_text(json.at("format").get<std::string>()),
        json.at("format") == "lockstep-student-bundle"
            ? " (lockstep-predict --bundle scores with it)"
            : ""));
  CheckpointManifest c;
  c.format_version = io::read_manifest_version(m, sealed, "format_version",
                                               kCheckpointFormatVersion, "checkpoint");
  CheckpointMeta& meta = c.meta;
  meta.model = m.name("model");
  meta.step = m.unsigned_integer("step");
  meta.updates = m.unsigned_integer("updates");
  meta.epoch = m.integer("epoch", 0, INT64_MAX);
  meta.step_in_epoch = m.integer("step_in_epoch", 0, INT64_MAX);
  meta.random_offset = m.unsigned_integer("random_offset");
  meta.ranks = static_cast<int>(m.integer("ranks", 1, INT_MAX));
  meta.config_hash = m.hex64("config_hash");
  c.optimizer_steps = m.integer("optimizer_steps", 0, INT64_MAX);
  // Absent from checkpoints of older lockstep versions.
  if (m.has("epoch_samples")) meta.epoch_samples = m.integer("epoch_samples", 0, INT64_MAX);
  if (m.has("epoch_complete")) meta.epoch_complete = m.boolean("epoch_complete");
  std::vector<std::string> names = checkpoint_files();
  if (m.has("files") && json.at("files").is_object())
    for (const auto& extra : checkpoint_extra_files())
      if (json.at("files").contains(extra)) names.push_back(extra);
  c.files = io::read_files(m, names);
  m.reject_unknown();
  return c;
}

}  // namespace lockstep::train

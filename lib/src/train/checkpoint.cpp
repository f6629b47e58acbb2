#include "lockstep/train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/directory_writer.h"
#include "lockstep/embedding/dynamic_table.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/io/safetensors.h"
#include "train/checkpoint_manifest.h"
#include "train/model_state.h"

namespace lockstep::train {

namespace fs = std::filesystem;

namespace {
constexpr const char* kStepPrefix = "step-";

// A dynamic table's key map travels in its host tensors as U64 bit patterns, two floats per key
// (embedding::is_u64_tensor()); the file stores it as U64.
io::DType file_dtype(const std::string& name) {
  return embedding::is_u64_tensor(name) ? io::DType::U64 : io::DType::F32;
}
int64_t file_numel(const std::string& name, size_t values) {
  return static_cast<int64_t>(embedding::is_u64_tensor(name) ? values / 2 : values);
}

void write_map(const fs::path& path, const std::map<std::string, std::vector<float>>& tensors,
               const std::map<std::string, std::string>& metadata) {
  std::vector<io::TensorRef> refs;
  for (const auto& [name, values] : tensors)
    refs.push_back({name, file_dtype(name), {file_numel(name, values.size())}, values.data()});
  io::write_safetensors(path.string(), refs, metadata);
}

/// Every tensor `expected` names must be in `file` with the same number of F32 values.
void check_map(const io::SafetensorsFile& file,
               const std::map<std::string, std::vector<float>>& expected) {
  for (const auto& [name, values] : expected) {
    LOCKSTEP_CHECK(file.has(name), "{}: tensor '{}' is missing (a checkpoint of another model?)",
                   file.path, name);
    const auto& t = file.get(name);
    LOCKSTEP_CHECK(t.dtype == file_dtype(name) && t.numel() == file_numel(name, values.size()),
                   "{}: tensor '{}' has {} {} values, the model needs {} {}", file.path, name,
                   t.numel(), io::dtype_name(t.dtype), file_numel(name, values.size()),
                   io::dtype_name(file_dtype(name)));
  }
  // And nothing the model does not have (a table it would silently leave out).
  for (const auto& t : file.tensors)
    LOCKSTEP_CHECK(expected.count(t.name) > 0,
                   "{}: tensor '{}' is not in this model (a checkpoint of another model?)",
                   file.path, t.name);
}

std::map<std::string, std::vector<float>> read_map(
    const io::SafetensorsFile& file, const std::map<std::string, std::vector<float>>& like) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, values] : like) {
    const io::TensorData& t = file.get(name);
    if (t.dtype == io::DType::F32) {
      out[name] = t.as<float>();
    } else {  // U64 (checked): its bytes, as the host tensor's float bit patterns
      std::vector<float> v(t.bytes.size() / sizeof(float));
      std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
      out[name] = std::move(v);
    }
  }
  return out;
}
}  // namespace

std::vector<std::string> remove_stale_checkpoint_temporaries(const std::string& root) {
  return io::remove_stale_temporaries(root, kStepPrefix);
}

void write_checkpoint_directory(const std::string& final_dir, const CheckpointMeta& meta,
                                models::Model<float>& model, const Context& ctx,
                                const CheckpointExtras& extras) {
  const auto& allowed = checkpoint_extra_files();
  for (const auto& [name, text] : extras)
    LOCKSTEP_CHECK(std::find(allowed.begin(), allowed.end(), name) != allowed.end(),
                   "checkpoint {}: '{}' is not a checkpoint file (allowed: {})", final_dir, name,
                   fmt::join(allowed, ", "));
  std::vector<std::string> files = checkpoint_files();
  io::write_directory_atomically(final_dir, [&](const std::string& dir) {
    const fs::path tmp(dir);
    for (const auto& [name, text] : extras) {
      write_file_atomically((tmp / name).string(), text);
      files.push_back(name);
    }
    const std::map<std::string, std::string> tag = {{"checkpoint_step", std::to_string(meta.step)}};
    model.dense_params().save(ctx, (tmp / files[0]).string(), tag);
    auto opt_meta = tag;
    opt_meta["optimizer_steps"] = std::to_string(model.dense_optimizer().step_count());
    write_map(tmp / files[1], optimizer_tensors(model, ctx), opt_meta);
    write_map(tmp / files[2], table_tensors(model, ctx), tag);

    CheckpointManifest manifest;
    manifest.meta = meta;
    manifest.optimizer_steps = model.dense_optimizer().step_count();
    manifest.files = io::digest_files(dir, files);
    write_file_atomically((tmp / "manifest.json").string(), checkpoint_manifest_text(manifest));
  });
}

std::string write_checkpoint(const std::string& root, const CheckpointMeta& meta,
                             models::Model<float>& model, const Context& ctx, int keep,
                             const CheckpointExtras& extras) {
  LOCKSTEP_CHECK(keep >= 1, "keep = {} checkpoints: must be >= 1", keep);
  remove_stale_checkpoint_temporaries(root);
  const std::string name = fmt::format("{}{:012d}", kStepPrefix, meta.step);
  const fs::path final_dir = fs::path(root) / name;
  write_checkpoint_directory(final_dir.string(), meta, model, ctx, extras);
  AtomicFileWriter latest((fs::path(root) / "LATEST").string());
  latest.write(name + "\n");
  latest.commit();

  // Retention: the newest `keep` checkpoints stay.
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().filename().string().rfind(kStepPrefix, 0) == 0)
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + keep < names.size(); ++i)
    if (names[i] != name) fs::remove_all(fs::path(root) / names[i], ec);
  return final_dir.string();
}

std::string latest_checkpoint(const std::string& root) {
  std::ifstream in(fs::path(root) / "LATEST");
  if (!in) return "";
  std::string name;
  std::getline(in, name);
  const std::string digits = name.substr(std::min(name.size(), std::strlen(kStepPrefix)));
  LOCKSTEP_CHECK(name.rfind(kStepPrefix, 0) == 0 && digits.size() >= 12 && digits.size() <= 20 &&
                     digits.find_first_not_of("0123456789") == std::string::npos,
                 "{}/LATEST names {}, not a checkpoint directory (step-<12 or more digits>)", root,
                 io::quote_text(name));
  return (fs::path(root) / name).string();
}

namespace {
CheckpointManifest read_verified_manifest(const std::string& path) {
  const std::string manifest_path = (fs::path(path) / "manifest.json").string();
  CheckpointManifest manifest = parse_checkpoint_manifest(
      io::read_manifest_text(manifest_path, "not a complete checkpoint"), manifest_path);
  io::verify_files(path, manifest.files);
  return manifest;
}
}  // namespace

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  return read_verified_manifest(path).meta;
}

std::string read_checkpoint_extra(const std::string& path, const std::string& name) {
  const fs::path file = fs::path(path) / name;
  std::error_code ec;
  if (!fs::exists(file, ec)) return "";
  std::ifstream in(file, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "{}: cannot read", file.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

CheckpointMeta read_checkpoint(const std::string& path, models::Model<float>& model,
                               const Context& ctx, uint64_t expected_config_hash) {
  const fs::path dir(path);
  const CheckpointManifest manifest = read_verified_manifest(path);
  const CheckpointMeta& meta = manifest.meta;
  LOCKSTEP_CHECK(meta.model == model.name(), "{}: a checkpoint of model {}, not '{}'", path,
                 io::quote_text(meta.model), model.name());
  LOCKSTEP_CHECK(expected_config_hash == 0 || meta.config_hash == expected_config_hash,
                 "{}: written by a run with another configuration (hash {:016x}, this run "
                 "{:016x}): resume with the configuration that wrote it",
                 path, meta.config_hash, expected_config_hash);

  // Read and check everything, then change the model.
  const auto& files = checkpoint_files();
  const io::SafetensorsFile dense = io::read_safetensors((dir / files[0]).string());
  const io::SafetensorsFile opt = io::read_safetensors((dir / files[1]).string());
  const io::SafetensorsFile tables = io::read_safetensors((dir / files[2]).string());
  model.dense_params().check_file(dense);
  const auto opt_like = optimizer_tensors(model, ctx);
  const auto table_like = table_tensors(model, ctx);
  check_map(opt, opt_like);
  check_map(tables, table_like);
  const auto opt_values = read_map(opt, opt_like);
  const auto table_values = read_map(tables, table_like);

  model.dense_params().assign_from(ctx, dense);
  assign_optimizer_and_tables(model, ctx, opt_values, manifest.optimizer_steps, table_values);
  return meta;
}

}  // namespace lockstep::train

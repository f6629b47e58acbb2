#include "serving/student_bundle.h"

#include <climits>
#include <filesystem>

#include "io/directory_writer.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/embedding/dynamic_table.h"
#include "lockstep/io/safetensors.h"

namespace lockstep::serving {

namespace fs = std::filesystem;

namespace {
void write_tensors(const std::string& path, const std::map<std::string, NamedTensor>& tensors) {
  std::vector<io::TensorRef> refs;
  for (const auto& [name, t] : tensors)  // ".keys": U64 as float bit patterns (2 per key)
    refs.push_back({name, embedding::is_u64_tensor(name) ? io::DType::U64 : io::DType::F32,
                    t.shape, t.values.data()});
  io::write_safetensors(path, refs);
}
}  // namespace

const std::vector<std::string>& student_bundle_files() {
  static const std::vector<std::string> files = {"student.safetensors", "embeddings.safetensors"};
  return files;
}

std::string student_bundle_manifest_text(const StudentBundleManifest& manifest) {
  const StudentBundle& b = manifest.bundle;
  nlohmann::ordered_json m;
  m["format"] = kBundleFormat;
  m["version"] = kBundleVersion;
  m["columns"] = b.columns;
  m["num_dense"] = b.num_dense;
  m["tables"] = nlohmann::ordered_json::array();
  for (const auto& t : b.tables) {
    m["tables"].push_back({{"name", t.name},
                           {"rows", t.rows},
                           {"dim", t.dim},
                           {"pooling", embedding::pooling_name(t.pooling)}});
    if (t.identity) m["tables"].back()["ids"] = "identity";  // absent: hashed (older bundles)
    if (t.dynamic()) m["tables"].back()["kind"] = "dynamic";  // rows: its feasigns (keys)
  }
  m["fields"] = nlohmann::ordered_json::array();
  for (const auto& f : b.fields) m["fields"].push_back({{"column", f.column}, {"table", f.table}});
  const auto& a = b.mlp.activation;
  m["mlp"] = {{"widths", b.mlp.widths},
              {"activation", nn::activation_name(a.kind)},
              {"activate_last", b.mlp.activate_last},
              {"leaky_slope", a.leaky_slope},
              {"prelu_init", a.prelu_init},
              {"dice_eps", a.dice_eps},
              {"dice_momentum", a.dice_momentum}};
  if (!b.sparse.empty()) m["sparse"] = b.sparse;
  m["files"] = io::files_json(manifest.files);
  return io::seal_manifest(m);
}

StudentBundleManifest parse_student_bundle_manifest(const std::string& text,
                                                    const std::string& path) {
  const bool sealed = io::check_manifest_seal(text, path);
  const nlohmann::json json = io::parse_json(text, path);
  io::JsonFields m(json, path);
  StudentBundleManifest out;
  LOCKSTEP_CHECK(!(json.is_object() && json.contains("format_version") && !json.contains("format")),
                 "{}: this is the manifest of a saved model or checkpoint (lockstep-eval --model "
                 "scores with it), not of a student bundle (lockstep-train --model dual --export "
                 "writes one)",
                 path);
  const std::string format = m.string("format");
  LOCKSTEP_CHECK(format == kBundleFormat, "{}: format {} is not {}", path, io::quote_text(format),
                 kBundleFormat);
  out.version = io::read_manifest_version(m, sealed, "version", kBundleVersion, "bundle");
  StudentBundle& b = out.bundle;
  // A name for the parse_* messages, which quote it whole.
  const auto excerpt = [](const std::string& s) {
    return s.size() > 64 ? s.substr(0, 64) + "..." : s;
  };
  b.columns = m.strings("columns");
  b.num_dense = m.integer("num_dense", 0, int64_t{1} << 20);
  for (auto& t : m.objects("tables")) {
    const std::string name = t.name("name");
    const int64_t rows = t.integer("rows", 1, int64_t{1} << 40);
    const int64_t dim = t.integer("dim", 1, 4096);  // rows * dim < 2^53
    const auto pooling = embedding::parse_pooling(
        excerpt(t.string("pooling")), fmt::format("{}: field '{}'", path, t.field("pooling")));
    b.tables.push_back({name, rows, dim, pooling, 0.0f});
    if (t.has("ids")) {
      const std::string ids = t.string("ids");
      LOCKSTEP_CHECK(ids == "hash" || ids == "identity", "{}: field '{}' = {} is not hash or identity",
                     path, t.field("ids"), io::quote_text(excerpt(ids)));
      b.tables.back().identity = ids == "identity";
    }
    if (t.has("kind")) {
      const std::string kind = t.string("kind");
      LOCKSTEP_CHECK(kind == "dynamic", "{}: field '{}' = {} is not dynamic", path,
                     t.field("kind"), io::quote_text(excerpt(kind)));
      b.tables.back().kind = embedding::TableKind::Dynamic;
    }
    t.reject_unknown();
  }
  for (auto& f : m.objects("fields")) {
    b.fields.push_back({f.name("column"), f.name("table"), 0});
    f.reject_unknown();
  }
  io::JsonFields mlp = m.object("mlp");
  b.mlp.widths = mlp.integers("widths", 1, int64_t{1} << 20);
  LOCKSTEP_CHECK(!b.mlp.widths.empty(), "{}: field 'mlp.widths' is empty", path);
  b.mlp.activate_last = mlp.boolean("activate_last");
  auto& a = b.mlp.activation;
  a.kind = nn::parse_activation(excerpt(mlp.string("activation")),
                                fmt::format("{}: field 'mlp.activation'", path));
  a.leaky_slope = mlp.real("leaky_slope", 0, 1);  // the ranges of ActivationConfig::validate
  a.prelu_init = mlp.real("prelu_init", -1, 1);
  a.dice_eps = mlp.real("dice_eps", 1e-12, 1);
  a.dice_momentum = mlp.real("dice_momentum", 0, 1);
  mlp.reject_unknown();
  if (m.has("sparse")) b.sparse = m.string("sparse");
  out.files = io::read_files(m, student_bundle_files());
  m.reject_unknown();
  return out;
}

void write_student_bundle(const std::string& dir, const StudentBundle& b,
                          const std::map<std::string, NamedTensor>& student,
                          const std::map<std::string, NamedTensor>& table_rows) {
  const fs::path target(dir);
  io::remove_stale_temporaries(
      target.has_parent_path() ? target.parent_path().string() : std::string("."),
      target.filename().string());
  const auto& files = student_bundle_files();
  io::write_directory_atomically(dir, [&](const std::string& tmp) {
    write_tensors(tmp + "/" + files[0], student);
    write_tensors(tmp + "/" + files[1], table_rows);
    StudentBundleManifest manifest;
    manifest.bundle = b;
    manifest.files = io::digest_files(tmp, files);
    write_file_atomically(tmp + "/manifest.json", student_bundle_manifest_text(manifest));
  });
}

StudentBundle read_student_bundle(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  const StudentBundleManifest manifest = parse_student_bundle_manifest(
      io::read_manifest_text(path,
                             "not a student bundle (written by DualDnn::export_student or "
                             "lockstep-train --export)"),
      path);
  io::verify_files(dir, manifest.files);
  return manifest.bundle;
}

}  // namespace lockstep::serving

#include "serving/student_bundle.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/directory_writer.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/io/safetensors.h"

namespace lockstep::serving {

namespace fs = std::filesystem;

namespace {
constexpr const char* kFiles[] = {"student.safetensors", "embeddings.safetensors"};

void write_tensors(const std::string& path, const std::map<std::string, NamedTensor>& tensors) {
  std::vector<io::TensorRef> refs;
  for (const auto& [name, t] : tensors)
    refs.push_back({name, io::DType::F32, t.shape, t.values.data()});
  io::write_safetensors(path, refs);
}
}  // namespace

void write_student_bundle(const std::string& dir, const StudentBundle& b,
                          const std::map<std::string, NamedTensor>& student,
                          const std::map<std::string, NamedTensor>& table_rows) {
  io::write_directory_atomically(dir, [&](const std::string& tmp) {
    write_tensors(tmp + "/" + kFiles[0], student);
    write_tensors(tmp + "/" + kFiles[1], table_rows);
    nlohmann::ordered_json m;
    m["format"] = kBundleFormat;
    m["version"] = kBundleVersion;
    m["columns"] = b.columns;
    m["num_dense"] = b.num_dense;
    for (const auto& t : b.tables)
      m["tables"].push_back({{"name", t.name},
                             {"rows", t.rows},
                             {"dim", t.dim},
                             {"pooling", embedding::pooling_name(t.pooling)}});
    for (const auto& f : b.fields) m["fields"].push_back({{"column", f.column}, {"table", f.table}});
    const auto& a = b.mlp.activation;
    m["mlp"] = {{"widths", b.mlp.widths},
                {"activation", nn::activation_name(a.kind)},
                {"activate_last", b.mlp.activate_last},
                {"leaky_slope", a.leaky_slope},
                {"prelu_init", a.prelu_init},
                {"dice_eps", a.dice_eps},
                {"dice_momentum", a.dice_momentum}};
    for (const char* f : kFiles) {
      uint64_t size = 0;
      const std::string hash = io::file_xxh64(tmp + "/" + f, &size);
      m["files"][f] = {{"bytes", size}, {"xxh64", hash}};
    }
    AtomicFileWriter manifest(tmp + "/manifest.json");
    manifest.write(m.dump(2) + "\n");
    manifest.commit();
  });
}

StudentBundle read_student_bundle(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  std::ifstream in(path);
  LOCKSTEP_CHECK(in.good(), "{}: missing: not a student bundle (written by DualDnn::export_student "
                 "or lockstep-train --export)", path);
  StudentBundle b;
  try {
    const auto m = nlohmann::json::parse(in);
    LOCKSTEP_CHECK(m.at("format").get<std::string>() == kBundleFormat,
                   "{}: format '{}' is not {}", path, m.at("format").get<std::string>(), kBundleFormat);
    LOCKSTEP_CHECK(m.at("version").get<int>() == kBundleVersion,
                   "{}: version {} is not supported (this lockstep reads {})", path,
                   m.at("version").get<int>(), kBundleVersion);
    b.columns = m.at("columns").get<std::vector<std::string>>();
    b.num_dense = m.at("num_dense").get<int64_t>();
    for (const auto& t : m.at("tables"))
      b.tables.push_back({t.at("name").get<std::string>(), t.at("rows").get<int64_t>(),
                          t.at("dim").get<int64_t>(),
                          embedding::parse_pooling(t.at("pooling").get<std::string>(), "pooling"),
                          0.0f});
    for (const auto& f : m.at("fields"))
      b.fields.push_back({f.at("column").get<std::string>(), f.at("table").get<std::string>(), 0});
    const auto& mlp = m.at("mlp");
    b.mlp.widths = mlp.at("widths").get<std::vector<int64_t>>();
    b.mlp.activate_last = mlp.at("activate_last").get<bool>();
    auto& a = b.mlp.activation;
    a.kind = nn::parse_activation(mlp.at("activation").get<std::string>(), "mlp.activation");
    a.leaky_slope = mlp.at("leaky_slope").get<float>();
    a.prelu_init = mlp.at("prelu_init").get<float>();
    a.dice_eps = mlp.at("dice_eps").get<float>();
    a.dice_momentum = mlp.at("dice_momentum").get<float>();
    for (const char* f : kFiles) {
      const auto& entry = m.at("files").at(f);
      io::verify_file(dir + "/" + f, entry.at("bytes").get<uint64_t>(),
                      entry.at("xxh64").get<std::string>());
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed manifest: {}", path, e.what()));
  }
  return b;
}

}  // namespace lockstep::serving

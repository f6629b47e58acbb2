#pragma once
// Internal: the on-disk format of a student serving bundle (docs/dual_dnn.md):
//   manifest.json           format, version, data columns, dense width, tables, pooled fields,
//                           the student MLP's configuration, and the size + XXH64 of each file
//   student.safetensors     the student MLP ("student.<i>.weight", ...)
//   embeddings.safetensors  "<table>.weight" (rows, dim) for every table a field reads

#include <map>
#include <string>
#include <vector>

#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/nn/mlp.h"

namespace lockstep::serving {

constexpr const char* kBundleFormat = "lockstep-student-bundle";
constexpr int kBundleVersion = 1;

struct StudentBundle {
  std::vector<std::string> columns;  // the data's sparse columns, Batch order
  int64_t num_dense = 0;
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;  // pooled only
  nn::MlpConfig mlp;
};

/// A named tensor of host floats.
struct NamedTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// Writes the bundle into `dir` atomically (temporary directory, fsync, rename): `student` are
/// the student MLP's parameters under their ParamSet names, `table_rows` "<table>.weight".
void write_student_bundle(const std::string& dir, const StudentBundle& bundle,
                          const std::map<std::string, NamedTensor>& student,
                          const std::map<std::string, NamedTensor>& table_rows);

/// Reads manifest.json of `dir` and verifies every file's size and checksum; Error names the file
/// and what is wrong (missing, truncated, corrupted, another format or version).
StudentBundle read_student_bundle(const std::string& dir);

}  // namespace lockstep::serving

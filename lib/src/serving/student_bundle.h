#pragma once
// Internal: the on-disk format of a student serving bundle (docs/dual_dnn.md):
//   manifest.json           format, version, data columns, dense width, tables, pooled fields,
//                           the student MLP's configuration, the size + XXH64 of each file, and
//                           last its own checksum
//   student.safetensors     the student MLP ("student.<i>.weight", ...)
//   embeddings.safetensors  "<table>.weight" (rows, dim) for every table a field reads
//
// manifest.json, version 2 (this lockstep writes it):
//   {"format": "lockstep-student-bundle", "version": 2, "columns": [string, ...],
//    "num_dense": int in [0, 2^20],
//    "tables": [{"name": string, "rows": [1, 2^40], "dim": [1, 4096], "pooling": "sum"|"mean"}],
//    "fields": [{"column": string, "table": string}],
//    "mlp": {"widths": [int in [1, 2^20], ...], "activation": name, "activate_last": bool,
//            "leaky_slope", "prelu_init", "dice_eps", "dice_momentum": numbers (ranges of
//            nn::ActivationConfig)},
//    "files": {"<name>": {"bytes": u64, "xxh64": "<16 hex digits>"}, ...},
//    "manifest_xxh64": "<16 hex digits>"}
// sealed by its last member (io/manifest.h). Version 1 is the same without the seal; it is still
// read. Every other member, a missing one, another type or a value out of range is an Error
// naming the file and the field.

#include <map>
#include <string>
#include <vector>

#include "io/manifest.h"
#include "lockstep/embedding/embedding_bag_collection.h"
#include "lockstep/nn/mlp.h"

namespace lockstep::serving {

constexpr const char* kBundleFormat = "lockstep-student-bundle";
constexpr int kBundleVersion = 2;

struct StudentBundle {
  std::vector<std::string> columns;  // the data's sparse columns, Batch order
  int64_t num_dense = 0;
  std::vector<embedding::TableConfig> tables;
  std::vector<embedding::FieldConfig> fields;  // pooled only
  nn::MlpConfig mlp;
  /// Not empty: the dynamic tables are read from this sparse export directory (its newest base
  /// and the deltas after it, when the bundle is loaded: docs/feasign_store.md) instead of
  /// embeddings.safetensors. An absolute path.
  std::string sparse;
};

/// A named tensor of host floats.
struct NamedTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// Writes the bundle into `dir` atomically (temporary directory, fsync, rename): `student` are
/// the student MLP's parameters under their ParamSet names, `table_rows` "<table>.weight".
/// Leftover temporary directories of earlier writes to `dir` by dead processes of this host are
/// removed first (io::remove_stale_temporaries).
void write_student_bundle(const std::string& dir, const StudentBundle& bundle,
                          const std::map<std::string, NamedTensor>& student,
                          const std::map<std::string, NamedTensor>& table_rows);

/// The files of a bundle directory.
const std::vector<std::string>& student_bundle_files();

struct StudentBundleManifest {
  int version = kBundleVersion;
  StudentBundle bundle;
  std::map<std::string, io::FileDigest> files;  // exactly student_bundle_files()
};

/// The text of manifest.json for `manifest` (written as kBundleVersion, sealed).
std::string student_bundle_manifest_text(const StudentBundleManifest& manifest);

/// Parses the bytes of a bundle's manifest.json strictly (see above); `path` names the file in
/// messages. Any input gives either the manifest or lockstep::Error naming `path` (and the field):
/// never another exception. Does not read the files it lists.
StudentBundleManifest parse_student_bundle_manifest(const std::string& text,
                                                    const std::string& path);

/// Reads manifest.json of `dir` and verifies every file's size and checksum; Error names the file
/// and what is wrong (missing, truncated, corrupted, another format or version; for the manifest
/// also a checksum mismatch and the field that is missing, mistyped, out of range or unknown).
StudentBundle read_student_bundle(const std::string& dir);

}  // namespace lockstep::serving

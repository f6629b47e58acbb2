#pragma once
// Reading and writing safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
// {string: string}}, then the raw little-endian tensor bytes.
//
// lockstep adds one metadata entry per tensor, "xxh64:<name>" = 16 hex digits of the XXH64 of its
// bytes, and verifies it on load, so a corrupted file is refused rather than silently loaded.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lockstep::io {

enum class DType { F32, F64, I32, I64, U64, U8 };
/// "F32", "F64", ... as written in safetensors headers.
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

/// A tensor to write: host bytes owned by the caller.
struct TensorRef {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

/// A tensor read from a file.
struct TensorData {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
  int64_t numel() const;
  /// Copies the bytes into a vector of T; throws Error naming the tensor when dtype differs.
  template <class T>
  std::vector<T> as() const;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // without the xxh64:* entries
  std::vector<TensorData> tensors;              // sorted by name
  /// The tensor called `name`; throws Error naming the file and the missing tensor.
  const TensorData& get(const std::string& name) const;
  bool has(const std::string& name) const;
  std::string path;
};

/// Writes `tensors` to `path` atomically: a temporary file in the same directory is written,
/// flushed, fsynced and renamed over `path`, so a crash never leaves a partial file under that
/// name. Throws Error naming the path on any I/O failure (the old file, if any, is kept).
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads and validates `path`: the header length, the header read strictly (valid JSON, no key
/// given twice, each tensor exactly {dtype, shape, data_offsets} of the right types, metadata
/// values strings), dtypes, shapes (no negative dimension, a byte count that fits in int64)
/// against the byte ranges, ranges inside the file and not overlapping, and the xxh64 checksums.
/// Any file gives either its tensors or an Error naming the file and the tensor or field.
SafetensorsFile read_safetensors(const std::string& path);

}  // namespace lockstep::io

#include "lockstep/io/safetensors.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"

namespace lockstep::io {

namespace {
constexpr const char* kChecksumPrefix = "xxh64:";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {{DType::F32, "F32", 4}, {DType::F64, "F64", 8},
                                 {DType::I32, "I32", 4}, {DType::I64, "I64", 8},
                                 {DType::U64, "U64", 8}, {DType::U8, "U8", 1}};

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

// Field `field` ("shape", "data_offsets") of tensor `name`: an array of integers in [0, INT64_MAX].
// Checked here rather than with get<std::vector<...>>(), which would also take booleans and
// floats, the latter with undefined behaviour outside the integer range.
std::vector<uint64_t> read_indices(const nlohmann::json& entry, const char* field,
                                   const std::string& path, const std::string& name) {
  const nlohmann::json& j = entry.at(field);
  LOCKSTEP_CHECK(j.is_array(), "{}: tensor '{}' field '{}' must be an array of integers, not {}",
                 path, name, field, j.type_name());
  std::vector<uint64_t> out;
  for (const nlohmann::json& v : j) {
    const bool ok = v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX);
    if (!ok) {
      std::string text = v.dump();
      if (text.size() > 40) text = text.substr(0, 40) + "...";
      throw Error(fmt::format("{}: tensor '{}' field '{}' holds {}: {}", path, name, field, text,
                              v.is_number_integer() && v.get<int64_t>() < 0
                                  ? "a negative dimension or offset"
                                  : "not an integer in [0, 2^63)"));
    }
    out.push_back(v.get<uint64_t>());
  }
  return out;
}

// The bytes of tensor `name` of `shape` in `dtype_bytes`-byte elements, at most `limit` (the data
// section). Error when they do not fit, or when the non-zero dimensions multiply past int64 (an
// empty tensor can have huge other dimensions, and TensorData::numel() multiplies them all).
uint64_t shape_bytes(const std::vector<uint64_t>& shape, uint64_t dtype_bytes, uint64_t limit,
                     const std::string& path, const std::string& name) {
  uint64_t elements = 1;  // of the non-zero dimensions
  bool empty = false;
  for (const uint64_t d : shape) {
    if (d == 0) {
      empty = true;
      continue;
    }
    LOCKSTEP_CHECK(elements <= static_cast<uint64_t>(INT64_MAX) / d,
                   "{}: tensor '{}' shape [{}] has more than 2^63 elements", path, name,
                   fmt::join(shape, ", "));
    elements *= d;
  }
  if (empty) return 0;
  LOCKSTEP_CHECK(elements <= limit / dtype_bytes,
                 "{}: tensor '{}' shape [{}] is too large for the {}-byte data section", path, name,
                 fmt::join(shape, ", "), limit);
  return elements * dtype_bytes;
}
}  // namespace

const char* dtype_name(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

int64_t TensorData::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<uint64_t>() {
  return DType::U64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}
}  // namespace

template <class T>
std::vector<T> TensorData::as() const {
  LOCKSTEP_CHECK(dtype == dtype_of<T>(), "tensor '{}' has dtype {}, expected {}", name,
                 dtype_name(dtype), dtype_name(dtype_of<T>()));
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}
template std::vector<float> TensorData::as<float>() const;
template std::vector<double> TensorData::as<double>() const;
template std::vector<int32_t> TensorData::as<int32_t>() const;
template std::vector<int64_t> TensorData::as<int64_t>() const;
template std::vector<uint64_t> TensorData::as<uint64_t>() const;
template std::vector<uint8_t> TensorData::as<uint8_t>() const;

const TensorData& SafetensorsFile::get(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw Error(fmt::format("{}: no tensor named '{}' (the file holds {} tensors)", path, name,
                          tensors.size()));
}

bool SafetensorsFile::has(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == name; });
}

void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) {
    LOCKSTEP_CHECK(k.rfind(kChecksumPrefix, 0) != 0, "{}: metadata key '{}' is reserved", path, k);
    meta[k] = v;
  }
  uint64_t offset = 0;
  std::vector<size_t> sizes;
  for (const auto& t : tensors) {
    LOCKSTEP_CHECK(!t.name.empty() && t.name != "__metadata__", "{}: bad tensor name '{}'", path,
                   t.name);
    int64_t n = 1;
    for (int64_t d : t.shape) {
      LOCKSTEP_CHECK(d >= 0, "{}: tensor '{}' has a negative dimension", path, t.name);
      n *= d;
    }
    const size_t bytes = static_cast<size_t>(n) * dtype_size(t.dtype);
    LOCKSTEP_CHECK(!header.contains(t.name), "{}: duplicate tensor name '{}'", path, t.name);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    meta[std::string(kChecksumPrefix) + t.name] =
        hex64(bytes ? XXH64(t.data, bytes, 0) : XXH64(nullptr, 0, 0));
    sizes.push_back(bytes);
    offset += bytes;
  }
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  AtomicFileWriter out(path);
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  out.write({reinterpret_cast<const char*>(le), 8});
  out.write(text);
  for (size_t i = 0; i < tensors.size(); ++i)
    out.write({static_cast<const char*>(tensors[i].data), sizes[i]});
  out.commit();
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOCKSTEP_CHECK(in.good(), "{}: cannot open for reading ({})", path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  LOCKSTEP_CHECK(file_size >= 8, "{}: truncated ({} bytes): not a safetensors file", path,
                 file_size);
  uint8_t le[8];
  in.read(reinterpret_cast<char*>(le), 8);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(le[i]) << (8 * i);
  LOCKSTEP_CHECK(header_len <= file_size - 8 && header_len < (uint64_t{1} << 30),
                 "{}: header length {} does not fit in the {}-byte file (truncated or not a "
                 "safetensors file)",
                 path, header_len, file_size);
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: header is not valid JSON: {}", path, e.what()));
  }
  LOCKSTEP_CHECK(header.is_object(), "{}: header is not a JSON object", path);

  SafetensorsFile file;
  file.path = path;
  std::map<std::string, std::string> checksums;
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it->begin(); m != it->end(); ++m) {
          const std::string key = m.key(), value = m->get<std::string>();
          if (key.rfind(kChecksumPrefix, 0) == 0)
            checksums[key.substr(std::strlen(kChecksumPrefix))] = value;
          else
            file.metadata[key] = value;
        }
        continue;
      }
      TensorData t;
      t.name = it.key();
      // write_safetensors() refuses it too: what is read must be writable again.
      LOCKSTEP_CHECK(!t.name.empty(), "{}: a tensor has an empty name", path);
      const std::string dtype = it->at("dtype").get<std::string>();
      const DTypeInfo* info = nullptr;
      for (const auto& d : kDTypes)
        if (dtype == d.name) info = &d;
      LOCKSTEP_CHECK(info, "{}: tensor '{}' has unsupported dtype '{}'", path, t.name, dtype);
      t.dtype = info->dtype;
      const std::vector<uint64_t> shape = read_indices(*it, "shape", path, t.name);
      const std::vector<uint64_t> off = read_indices(*it, "data_offsets", path, t.name);
      LOCKSTEP_CHECK(off.size() == 2 && off[0] <= off[1] && off[1] <= data_size,
                     "{}: tensor '{}' data_offsets lie outside the {}-byte data section "
                     "(truncated file?)",
                     path, t.name, data_size);
      // Bounded by the data section, so that neither this product nor numel() overflows and a
      // huge shape cannot pass by wrapping around to the byte count.
      const uint64_t bytes = shape_bytes(shape, info->size, data_size, path, t.name);
      LOCKSTEP_CHECK(bytes == off[1] - off[0],
                     "{}: tensor '{}' shape needs {} bytes but its data_offsets span {}", path,
                     t.name, bytes, off[1] - off[0]);
      t.shape.assign(shape.begin(), shape.end());
      ranges.emplace_back(off[0], off[1]);
      t.bytes.resize(off[1] - off[0]);
      in.seekg(static_cast<std::streamoff>(8 + header_len + off[0]));
      in.read(reinterpret_cast<char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
      LOCKSTEP_CHECK(in.good(), "{}: read error in tensor '{}'", path, t.name);
      file.tensors.push_back(std::move(t));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed header: {}", path, e.what()));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    LOCKSTEP_CHECK(ranges[i].first >= ranges[i - 1].second, "{}: tensor data ranges overlap", path);
  for (const auto& t : file.tensors) {
    auto it = checksums.find(t.name);
    if (it == checksums.end()) continue;  // files from other tools carry no checksums
    const std::string got = hex64(XXH64(t.bytes.data(), t.bytes.size(), 0));
    LOCKSTEP_CHECK(got == it->second,
                   "{}: checksum mismatch in tensor '{}' (stored {}, computed {}): the file is "
                   "corrupted",
                   path, t.name, it->second, got);
  }
  return file;
}

}  // namespace lockstep::io

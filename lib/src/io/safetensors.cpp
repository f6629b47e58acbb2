#include "lockstep/io/safetensors.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/json_fields.h"
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

/// The bytes of a tensor of `shape` (no negative dimension) and `dtype_bytes`-byte elements;
/// false when the element size times the non-zero dimensions does not fit in int64, so that no
/// product of its dimensions overflows, in any order (TensorData::numel()).
bool tensor_bytes(const std::vector<int64_t>& shape, size_t dtype_bytes, uint64_t* bytes) {
  int64_t n = static_cast<int64_t>(dtype_bytes);
  bool empty = false;
  for (int64_t d : shape)
    if (d == 0)
      empty = true;
    else if (__builtin_mul_overflow(n, d, &n))
      return false;
  *bytes = empty ? 0 : static_cast<uint64_t>(n);
  return true;
}

/// A tensor's name as read from a file, for messages.
std::string tensor_name(const std::string& name) { return quote_text(name, 64, '\''); }

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("({})", fmt::join(shape, ", "));
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
  for (int64_t d : shape) {
    if (d == 0) return 0;
    n *= d;  // read_safetensors checked that the non-zero dimensions multiply within int64
  }
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
    uint64_t bytes = 0;
    for (int64_t d : t.shape)
      LOCKSTEP_CHECK(d >= 0, "{}: tensor '{}' has shape {}: a negative dimension", path, t.name,
                     shape_text(t.shape));
    LOCKSTEP_CHECK(tensor_bytes(t.shape, dtype_size(t.dtype), &bytes),
                   "{}: tensor '{}' has shape {}: its dimensions multiply beyond 2^63 bytes", path,
                   t.name, shape_text(t.shape));
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
  const nlohmann::json header = parse_json(text, path);
  JsonFields fields(header, path);

  SafetensorsFile file;
  file.path = path;
  std::map<std::string, std::string> checksums;
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const std::string& name : fields.keys()) {
    if (name == "__metadata__") {
      JsonFields meta = fields.object(name);
      for (const std::string& key : meta.keys()) {
        const std::string value = meta.string(key);
        if (key.rfind(kChecksumPrefix, 0) == 0)
          checksums[key.substr(std::strlen(kChecksumPrefix))] = value;
        else
          file.metadata[key] = value;
      }
      continue;
    }
    // write_safetensors() refuses it too: what is read must be writable again.
    LOCKSTEP_CHECK(!name.empty(), "{}: a tensor has an empty name", path);
    JsonFields entry = fields.object(name);
    TensorData t;
    t.name = name;
    const std::string dtype = entry.string("dtype");
    const DTypeInfo* info = nullptr;
    for (const auto& d : kDTypes)
      if (dtype == d.name) info = &d;
    LOCKSTEP_CHECK(info, "{}: tensor {} has unsupported dtype {}", path, tensor_name(name),
                   quote_text(dtype));
    t.dtype = info->dtype;
    t.shape = entry.integers("shape", 0, INT64_MAX);
    const std::vector<int64_t> off = entry.integers("data_offsets", 0, INT64_MAX);
    entry.reject_unknown();
    LOCKSTEP_CHECK(off.size() == 2, "{}: field '{}' must hold 2 offsets, got {}", path,
                   entry.field("data_offsets"), off.size());
    const uint64_t begin = static_cast<uint64_t>(off[0]), end = static_cast<uint64_t>(off[1]);
    LOCKSTEP_CHECK(begin <= end && end <= data_size,
                   "{}: tensor {} data_offsets [{}, {}] lie outside the {}-byte data section "
                   "(truncated file?)",
                   path, tensor_name(name), begin, end, data_size);
    uint64_t bytes = 0;
    LOCKSTEP_CHECK(tensor_bytes(t.shape, info->size, &bytes),
                   "{}: tensor {} has shape {}: its dimensions multiply beyond 2^63 bytes", path,
                   tensor_name(name), shape_text(t.shape));
    LOCKSTEP_CHECK(bytes == end - begin,
                   "{}: tensor {} of shape {} needs {} bytes but its data_offsets span {}", path,
                   tensor_name(name), shape_text(t.shape), bytes, end - begin);
    ranges.emplace_back(begin, end);
    t.bytes.resize(end - begin);
    in.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    in.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    LOCKSTEP_CHECK(in.good(), "{}: read error in tensor {}", path, tensor_name(name));
    file.tensors.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    LOCKSTEP_CHECK(ranges[i].first >= ranges[i - 1].second, "{}: tensor data ranges overlap", path);
  for (const auto& t : file.tensors) {
    auto it = checksums.find(t.name);
    if (it == checksums.end()) continue;  // files from other tools carry no checksums
    const uint64_t got = XXH64(t.bytes.data(), t.bytes.size(), 0);
    uint64_t stored = 0;
    LOCKSTEP_CHECK(parse_hex64(it->second, &stored) && stored == got,
                   "{}: checksum mismatch in tensor {} (stored {}, computed {}): the file is "
                   "corrupted",
                   path, tensor_name(t.name), quote_text(it->second), hex64(got));
  }
  return file;
}

}  // namespace lockstep::io

// Fuzz target: safetensors files (lockstep/io/safetensors.h, read_safetensors), read from a
// scratch file since the reader takes a path.
//
// Checks, besides "only lockstep::Error": every tensor of an accepted file holds exactly
// numel × dtype size bytes (numel computed without overflow), the tensors are sorted by unique
// name, no checksum entry is left in the metadata, and writing the file again with
// write_safetensors() reads back to the same tensors and metadata.

#include <limits>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "lockstep/io/safetensors.h"

namespace {

// numel × dtype size, or false when that does not fit in a uint64_t.
bool byte_size(const lockstep::io::TensorData& t, uint64_t& bytes) {
  bytes = lockstep::io::dtype_size(t.dtype);
  for (const int64_t d : t.shape) {
    if (d < 0) return false;
    if (d != 0 && bytes > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d))
      return false;
    bytes *= static_cast<uint64_t>(d);
  }
  return true;
}

bool same_tensors(const lockstep::io::SafetensorsFile& a, const lockstep::io::SafetensorsFile& b) {
  if (a.tensors.size() != b.tensors.size() || a.metadata != b.metadata) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.bytes != y.bytes)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  static fuzz::ScratchFile input("input.safetensors");
  static fuzz::ScratchFile rewritten("rewritten.safetensors");
  return fuzz::accept_only_lockstep_errors([&] {
    const io::SafetensorsFile file = io::read_safetensors(input.write(fuzz::as_text(data, size)));

    std::vector<io::TensorRef> refs;
    for (size_t i = 0; i < file.tensors.size(); ++i) {
      const io::TensorData& t = file.tensors[i];
      uint64_t bytes = 0;
      fuzz::require(byte_size(t, bytes), "a tensor's numel x dtype size overflows");
      fuzz::require(bytes == t.bytes.size(), "a tensor holds other than numel x dtype size bytes");
      fuzz::require(i == 0 || file.tensors[i - 1].name < t.name,
                    "tensors not sorted or not unique");
      fuzz::require(file.has(t.name) && &file.get(t.name) == &t, "get() finds another tensor");
      refs.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
    }
    for (const auto& [key, value] : file.metadata)
      fuzz::require(key.rfind("xxh64:", 0) != 0, "a checksum entry left in the metadata");

    try {
      io::write_safetensors(rewritten.path(), refs, file.metadata);
      fuzz::require(same_tensors(file, io::read_safetensors(rewritten.path())),
                    "an accepted file written again reads back different");
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fuzz::require(false, "an accepted file cannot be written again");
    }
  });
}

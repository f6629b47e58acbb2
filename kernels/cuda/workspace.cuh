#pragma once
// Internal: carving one ctx.workspace() allocation into the scratch pieces of a launcher.

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

/// Carves one workspace allocation into pieces, each starting on a 256-byte boundary (what CUB
/// and coalesced access want). First reserve() every piece (it returns the piece's byte offset),
/// then request bytes() from ctx.workspace(), then take the pieces with at().
///
/// bytes() is at least 1 even when every piece is empty: the workspace base is then a real
/// allocation, never the null pointer of an empty buffer, so every piece is a valid pointer (a
/// null temp-storage pointer would turn a CUB call into a mere size query).
class WorkspaceLayout {
 public:
  size_t reserve(size_t bytes) {
    const size_t at = bytes_;
    bytes_ += (bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  }
  size_t bytes() const { return bytes_ > 0 ? bytes_ : 1; }

 private:
  static constexpr size_t kAlign = 256;
  size_t bytes_ = 0;
};

/// The piece at byte `offset` of a workspace.
template <class T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

/// Bytes of n floats.
inline size_t floats(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

}  // namespace lockstep::kernels::cuda

#pragma once
// Initial values of a dynamic table's feasign (issue 13): a pure function of (seed, table,
// key, element), so a feasign created on any rank, on the CPU or the GPU, or created again after
// its eviction, starts from the same values. Host and device (LOCKSTEP_HD).

#include <cmath>
#include <cstdint>

#include "lockstep/core/philox.h"

namespace lockstep::embedding {

/// Element `d` of feasign `key` in the table whose stream is `table_stream` (XXH64 of its name,
/// as hashed tables use): uniform in [-scale, scale), from Philox keyed by seed ^ table_stream,
/// counter (key, d) — distinct keys of a table never share a counter.
LOCKSTEP_HD float feasign_init_value(uint64_t seed, uint64_t table_stream, uint64_t key,
                                     int64_t d, float scale) {
  const float u = uniform01_from_u32(philox_u32(seed ^ table_stream, key, static_cast<uint64_t>(d)));
  return fmaf(2.0f * scale, u, -scale);
}

}  // namespace lockstep::embedding

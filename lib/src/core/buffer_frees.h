#pragma once
// Internal: Buffer frees as the graphs of the training step (train/step_graphs.cpp) see them.

#include <cstdint>

namespace lockstep::detail {

/// Buffers (host or device) freed on this thread so far: a region that frees one is neither
/// captured nor replayed, since its graph would go on using the memory.
uint64_t buffer_frees();
/// A device buffer freed while its stream is being captured is not freed then (a stream-ordered
/// free would become part of the graph and free again at every replay) but kept on this thread's
/// list; this frees the list's buffers, each in its stream's order after what is enqueued there.
void free_deferred_buffers() noexcept;

}  // namespace lockstep::detail

#include "kernels/common.h"

namespace lockstep::kernels::detail {

void no_cuda_kernel(const Context& ctx, const char* op, size_t element_size) {
  if (!LOCKSTEP_CUDA_ENABLED) {
    throw Error(fmt::format("{}: context is on {} but this build of lockstep has no CUDA support",
                            op, ctx.device().str()));
  }
  throw Error(
      fmt::format("{}: no CUDA kernel for {}-byte elements; double precision runs on the "
                  "CPU only (it exists for gradient checks)",
                  op, element_size));
}

}  // namespace lockstep::kernels::detail

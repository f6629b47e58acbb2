#include "lockstep/config.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#include "lockstep/core/launch_recorder.h"

#include <cstdlib>
#include <cstring>

namespace lockstep::detail {

namespace {
/// Errors that corrupt the CUDA context: every later call of this process fails with them.
bool is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorLaunchTimeout:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorUnknown:  // an internal driver failure: assume the worst and stop the rank
      return true;
    default:
      return false;
  }
}
}  // namespace

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  (void)cudaGetLastError();
  const std::string message = fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err),
                                          cudaGetErrorString(err), expr, file, line);
  if (is_sticky(err))
    throw DeviceError(message + "; the device is unusable for the rest of this process");
  throw Error(message);
}

void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  throw Error(fmt::format("cuBLAS error {} ({}) in {} at {}:{}", cublasGetStatusName(st),
                          cublasGetStatusString(st), expr, file, line));
}

void check_kernel_launch(const Context& ctx, const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    static const bool sync_check = [] {
      const char* v = std::getenv("LOCKSTEP_SYNC_CHECK");
      return v && std::strcmp(v, "0") != 0;
    }();
    if (!sync_check || !ctx.options().sync_check) return;
    // A stream being captured into a CUDA graph runs nothing yet (and may not be waited for).
    const LaunchRecorder* recorder = ctx.recorder();
    if (recorder && recorder->mode() == LaunchRecorder::Mode::Capture) return;
    err = cudaStreamSynchronize(stream_of(ctx));
    if (err == cudaSuccess) return;
  }
  throw_cuda_error(err, kernel, file, line);
}

}  // namespace lockstep::detail
#endif

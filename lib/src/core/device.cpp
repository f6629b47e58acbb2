#include "lockstep/core/device.h"

#include "lockstep/config.h"
#include "lockstep/core/error.h"
#include "lockstep/core/logging.h"

#if LOCKSTEP_CUDA_ENABLED
#include <cuda_runtime_api.h>
#endif

namespace lockstep {

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

bool built_with_cuda() { return LOCKSTEP_CUDA_ENABLED != 0; }

namespace {
#if LOCKSTEP_CUDA_ENABLED
/// cudaGetDeviceCount's result and count, the runtime's sticky "no driver / no device" error
/// cleared.
cudaError_t query_device_count(int& n) {
  n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    n = 0;
  }
  return err;
}
#endif
}  // namespace

int cuda_device_count() {
#if LOCKSTEP_CUDA_ENABLED
  int n = 0;
  query_device_count(n);
  return n;
#else
  return 0;
#endif
}

std::string cuda_unavailable_reason() {
#if LOCKSTEP_CUDA_ENABLED
  int n = 0;
  const cudaError_t err = query_device_count(n);
  if (n > 0) return {};
  if (err == cudaSuccess || err == cudaErrorNoDevice) return "no CUDA device is visible";
  if (err == cudaErrorInsufficientDriver)  // also what the runtime says when there is no driver
    return "no NVIDIA driver is loaded, or it is older than the CUDA runtime lockstep was built "
           "with (cudaErrorInsufficientDriver)";
  return fmt::format("the CUDA runtime found no usable device: {} ({})", cudaGetErrorName(err),
                     cudaGetErrorString(err));
#else
  return "this build of lockstep has no CUDA support";
#endif
}

Device select_device(const std::string& request, int local_rank) {
  if (request == "cpu") return Device::cpu();
  const int count = cuda_device_count();
  if (request == "auto") {
    if (count > 0) return Device::cuda(local_rank % count);
    log().info("running on the CPU: {}", cuda_unavailable_reason());
    return Device::cpu();
  }
  if (request == "cuda" || request.rfind("cuda:", 0) == 0) {
    LOCKSTEP_CHECK(built_with_cuda(),
                   "--device {}: this build of lockstep has no CUDA support; rebuild with "
                   "-DLOCKSTEP_WITH_CUDA=ON or use --device cpu",
                   request);
    LOCKSTEP_CHECK(count > 0,
                   "--device {}: {} (check nvidia-smi and CUDA_VISIBLE_DEVICES) or use --device "
                   "cpu",
                   request, cuda_unavailable_reason());
    if (request == "cuda") return Device::cuda(local_rank % count);
    int index = -1;
    try {
      size_t used = 0;
      index = std::stoi(request.substr(5), &used);
      if (used != request.size() - 5) index = -1;
    } catch (const std::exception&) {
      index = -1;
    }
    LOCKSTEP_CHECK(index >= 0 && index < count,
                   "--device {}: no such CUDA device; {} device(s) visible, use cuda:0..cuda:{}",
                   request, count, count - 1);
    return Device::cuda(index);
  }
  throw Error(
      fmt::format("--device = '{}' is not a device: use auto, cpu, cuda or cuda:N", request));
}

}  // namespace lockstep

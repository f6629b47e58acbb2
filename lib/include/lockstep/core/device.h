#pragma once
// Where computation runs: the CPU or one CUDA device.

#include <string>

namespace lockstep {

enum class DeviceType { CPU, CUDA };

/// A compute device. `index` is the CUDA ordinal (ignored for the CPU).
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  /// "cpu" or "cuda:N".
  std::string str() const;
  bool operator==(const Device& o) const {
    return type == o.type && (is_cpu() || index == o.index);
  }
  bool operator!=(const Device& o) const { return !(*this == o); }

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
};

/// True when this build of lockstep contains the CUDA kernels.
bool built_with_cuda();

/// Number of visible CUDA devices; 0 when built without CUDA, when no driver is loaded or
/// when no device is visible (never throws).
int cuda_device_count();

/// Why cuda_device_count() is 0, in words: "this build of lockstep has no CUDA support", "no
/// CUDA device is visible", or the CUDA runtime's error (e.g. cudaErrorInsufficientDriver: the
/// driver is older than the toolkit lockstep was built with). Empty when a device is visible.
std::string cuda_unavailable_reason();

/// Resolves a --device flag value:
///  - "auto": CUDA device 0 when built with CUDA and a device is visible, else the CPU
///    (logging a one-line notice saying why);
///  - "cpu": the CPU;
///  - "cuda" or "cuda:N": that CUDA device; throws lockstep::Error when this build has no CUDA
///    or no such device is visible.
/// `local_rank` picks the device for "auto"/"cuda" when several ranks share a node
/// (device = local_rank % count).
Device select_device(const std::string& request, int local_rank = 0);

}  // namespace lockstep

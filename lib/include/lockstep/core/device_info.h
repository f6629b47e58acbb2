#pragma once
// Hardware ceilings of a device, for benchmarks that report a fraction of peak.

#include <string>

#include "lockstep/core/device.h"

namespace lockstep {

struct DeviceInfo {
  std::string name;               // "NVIDIA H100 80GB HBM3" or the CPU model name
  int compute_units = 0;          // SMs or logical CPU cores
  double peak_fp32_gflops = 0;    // theoretical FP32 (FMA = 2 FLOPs), 0 when unknown
  double peak_bandwidth_gbs = 0;  // theoretical DRAM bandwidth in GB/s (1e9 B/s), 0 when unknown
  std::string how;                // how the ceilings were obtained
};

/// CUDA: from device attributes (SM count × FP32 lanes per SM × 2 × clock; memory clock × bus
/// width × 2). CPU: FP32 peak from /proc/cpuinfo (cores × MHz × SIMD FMA lanes × 2 × 2 FMA
/// units); bandwidth is not knowable from /proc, so it is 0 here and benchmarks measure it.
DeviceInfo query_device_info(const Device& device);

}  // namespace lockstep

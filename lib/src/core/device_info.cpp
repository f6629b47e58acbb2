#include "lockstep/core/device_info.h"

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "lockstep/config.h"
#include "lockstep/core/error.h"

#if LOCKSTEP_CUDA_ENABLED
#include "core/cuda_check.h"
#endif

namespace lockstep {

namespace {
DeviceInfo cpu_info() {
  DeviceInfo info;
  info.compute_units = static_cast<int>(std::thread::hardware_concurrency());
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags;
  double mhz = 0;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon), value = line.substr(colon + 1);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (key == "model name" && info.name.empty()) info.name = value;
    if (key == "cpu MHz" && mhz == 0) mhz = std::atof(value.c_str());
    if (key == "flags" && flags.empty()) flags = " " + value + " ";
  }
  // FP32 lanes per FMA instruction: AVX-512 16, AVX2+FMA 8, else SSE 4 (no FMA: mul + add).
  int lanes = 4;
  if (flags.find(" avx512f ") != std::string::npos)
    lanes = 16;
  else if (flags.find(" fma ") != std::string::npos && flags.find(" avx2 ") != std::string::npos)
    lanes = 8;
  info.peak_fp32_gflops = info.compute_units * mhz * 1e-3 * lanes * 2 /*FMA*/ * 2 /*units*/;
  info.how = fmt::format(
      "CPU: {} logical cores x {:.0f} MHz x {} fp32 lanes x 2 (FMA) x 2 FMA units "
      "(an upper bound; SMT siblings share units); bandwidth: measured",
      info.compute_units, mhz, lanes);
  if (info.name.empty()) info.name = "unknown CPU";
  return info;
}
}  // namespace

DeviceInfo query_device_info(const Device& device) {
  if (device.is_cpu()) return cpu_info();
#if LOCKSTEP_CUDA_ENABLED
  DeviceInfo info;
  cudaDeviceProp prop{};
  LOCKSTEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device.index));
  info.name = prop.name;
  int sms = 0, clock_khz = 0, mem_clock_khz = 0, bus_bits = 0;
  LOCKSTEP_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device.index));
  LOCKSTEP_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device.index));
  LOCKSTEP_CUDA_CHECK(
      cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, device.index));
  LOCKSTEP_CUDA_CHECK(
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device.index));
  // FP32 lanes per SM: 128 on Ampere GA10x, Ada and Hopper; 64 on Volta and GA100.
  const int lanes = (prop.major == 7 || (prop.major == 8 && prop.minor == 0)) ? 64 : 128;
  info.compute_units = sms;
  info.peak_fp32_gflops = sms * lanes * 2.0 * clock_khz * 1e-6;
  info.peak_bandwidth_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) * 1e-9;
  info.how = fmt::format(
      "CUDA sm_{}{}: {} SMs x {} fp32 lanes x 2 x {:.0f} MHz boost; DRAM {} bits x "
      "{:.0f} MHz x 2",
      prop.major, prop.minor, sms, lanes, clock_khz * 1e-3, bus_bits, mem_clock_khz * 1e-3);
  return info;
#else
  throw Error(fmt::format("query_device_info({}): this build has no CUDA support", device.str()));
#endif
}

}  // namespace lockstep

#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): the profiler control of the CUDA runtime.
// With LOCKSTEP_EMU_PROFILE set, a program that calls cudaProfilerStart is profiled from its
// first call to the next cudaProfilerStop only (as nsys --capture-range=cudaProfilerApi
// records); both wait for the device's work first, so that what ran before stays outside.

#include "cuda_runtime_api.h"

cudaError_t cudaProfilerStart();
cudaError_t cudaProfilerStop();

#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): see cuda_runtime_api.h.
#include "cuda_runtime_api.h"

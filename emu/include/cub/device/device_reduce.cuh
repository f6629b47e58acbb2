#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): see cub/cub.cuh.
#include "cub/cub.cuh"

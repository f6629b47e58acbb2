#pragma once
// lockstep's CUDA emulator (docs/cuda_emulation.md): the data types cuBLAS's *Ex calls name.
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;

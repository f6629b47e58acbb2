# Finds everything lockstep builds against. Debian package names are in scripts/deps.sh.
include(GNUInstallDirs)
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(MPI COMPONENTS CXX)

# OpenBLAS (CPU GEMM). Debian ships a config file; fall back to a plain search.
find_package(OpenBLAS CONFIG QUIET)
if(NOT OpenBLAS_FOUND)
  find_path(OpenBLAS_INCLUDE_DIRS cblas.h PATH_SUFFIXES openblas openblas-pthread)
  find_library(OpenBLAS_LIBRARIES NAMES openblas)
endif()
if(NOT OpenBLAS_LIBRARIES OR NOT OpenBLAS_INCLUDE_DIRS)
  message(FATAL_ERROR "OpenBLAS not found: install libopenblas-dev (scripts/deps.sh does)")
endif()
add_library(lockstep_blas INTERFACE)
target_include_directories(lockstep_blas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
target_link_libraries(lockstep_blas INTERFACE ${OpenBLAS_LIBRARIES})

# The float GEMMs of the CPU kernels (docs/performance.md "GEMM library"): oneDNN's sgemm when
# LOCKSTEP_CPU_GEMM is onednn, or AUTO and libdnnl-dev is installed; BLIS when it is blis
# (libblis-dev); OpenBLAS otherwise. Doubles (oneDNN has none; the finite-difference checks)
# always go to OpenBLAS, which stays first in the link order for the cblas_* symbols.
set(LOCKSTEP_GEMM_ONEDNN OFF)
set(LOCKSTEP_GEMM_BLIS OFF)
if(LOCKSTEP_CPU_GEMM STREQUAL "blis")
  find_path(BLIS_INCLUDE_DIR blis.h PATH_SUFFIXES x86_64-linux-gnu blis)
  find_library(BLIS_LIBRARY NAMES blis)
  if(NOT BLIS_INCLUDE_DIR OR NOT BLIS_LIBRARY)
    message(FATAL_ERROR "LOCKSTEP_CPU_GEMM=blis but BLIS was not found: install libblis-dev")
  endif()
  set(LOCKSTEP_GEMM_BLIS ON)
  target_include_directories(lockstep_blas INTERFACE ${BLIS_INCLUDE_DIR})
  target_link_libraries(lockstep_blas INTERFACE ${BLIS_LIBRARY})
elseif(NOT LOCKSTEP_CPU_GEMM STREQUAL "openblas")
  find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(DNNL_LIBRARY NAMES dnnl)
  find_package(OpenMP COMPONENTS CXX)  # Debian's oneDNN threads with OpenMP: held to 1 per call
  if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY AND OpenMP_CXX_FOUND)
    set(LOCKSTEP_GEMM_ONEDNN ON)
    target_include_directories(lockstep_blas INTERFACE ${DNNL_INCLUDE_DIR})
    target_link_libraries(lockstep_blas INTERFACE ${DNNL_LIBRARY} OpenMP::OpenMP_CXX)
  elseif(LOCKSTEP_CPU_GEMM STREQUAL "onednn")
    message(FATAL_ERROR "LOCKSTEP_CPU_GEMM=onednn but oneDNN was not found: install libdnnl-dev")
  endif()
endif()
if(LOCKSTEP_GEMM_ONEDNN)
  message(STATUS "lockstep: CPU float GEMM: oneDNN (LOCKSTEP_CPU_GEMM=${LOCKSTEP_CPU_GEMM})")
elseif(LOCKSTEP_GEMM_BLIS)
  message(STATUS "lockstep: CPU float GEMM: BLIS (LOCKSTEP_CPU_GEMM=${LOCKSTEP_CPU_GEMM})")
else()
  message(STATUS "lockstep: CPU float GEMM: OpenBLAS (LOCKSTEP_CPU_GEMM=${LOCKSTEP_CPU_GEMM})")
endif()

# xxHash: Debian ships a static library and headers but no CMake package.
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY NAMES xxhash REQUIRED)
add_library(xxhash_lib INTERFACE)
target_include_directories(xxhash_lib INTERFACE ${XXHASH_INCLUDE_DIR})
target_link_libraries(xxhash_lib INTERFACE ${XXHASH_LIBRARY})

# zstd (the data cache's compression; libzstd-dev). Found by hand like xxHash, so that a sysroot
# without its CMake package (scripts/device_prepare.sh) works too. A private dependency of the
# shared library: consumers of the installed package never see it.
find_path(ZSTD_INCLUDE_DIR zstd.h REQUIRED)
find_library(ZSTD_LIBRARY NAMES zstd REQUIRED)
add_library(zstd_lib INTERFACE)
target_include_directories(zstd_lib INTERFACE ${ZSTD_INCLUDE_DIR})
target_link_libraries(zstd_lib INTERFACE ${ZSTD_LIBRARY})

# CUDA: AUTO turns it on when nvcc is found. LOCKSTEP_CUDA_EMULATION builds the CUDA code paths
# with the host compiler against lockstep's emulator of the CUDA runtime, cuBLAS and CUB (emu/,
# docs/cuda_emulation.md): the GPU tests then run on the CPU. For testing; never for speed.
set(LOCKSTEP_CUDA_ENABLED OFF)
if(LOCKSTEP_CUDA_EMULATION)
  include(LockstepCudaEmulation)
  set(LOCKSTEP_CUDA_ENABLED ON)
elseif(NOT LOCKSTEP_WITH_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES ${LOCKSTEP_CUDA_ARCHITECTURES})
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(LOCKSTEP_CUDA_ENABLED ON)
  elseif(LOCKSTEP_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LOCKSTEP_WITH_CUDA=ON but no CUDA compiler (nvcc) was found; "
                        "install the CUDA toolkit or set LOCKSTEP_WITH_CUDA=OFF")
  endif()
endif()

set(NCCL_FOUND OFF)
if(LOCKSTEP_CUDA_ENABLED AND NOT LOCKSTEP_CUDA_EMULATION)  # NCCL needs real GPUs
  find_package(NCCL)
endif()

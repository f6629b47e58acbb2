# LOCKSTEP_CUDA_EMULATION=ON: lockstep's CUDA code paths built with the host compiler against its
# emulator of the CUDA runtime, cuBLAS, CUB and NCCL (emu/, docs/cuda_emulation.md). The
# emulator stands in for the CUDA::cudart, CUDA::cublas and NCCL::nccl targets; .cu files become C++ through
# emu/translate_cu.py (lockstep_emu_translate).

find_package(Python3 REQUIRED COMPONENTS Interpreter)

# Shared: the library and the tests that call CUDA themselves must see one emulated device.
add_library(lockstep_cuda_emu SHARED
            ${PROJECT_SOURCE_DIR}/emu/src/runtime.cpp ${PROJECT_SOURCE_DIR}/emu/src/fiber.cpp
            ${PROJECT_SOURCE_DIR}/emu/src/cublas.cpp ${PROJECT_SOURCE_DIR}/emu/src/nccl.cpp
            ${PROJECT_SOURCE_DIR}/emu/src/racecheck.cpp ${PROJECT_SOURCE_DIR}/emu/src/profile.cpp)
target_include_directories(lockstep_cuda_emu BEFORE PUBLIC ${PROJECT_SOURCE_DIR}/emu/include)
target_compile_features(lockstep_cuda_emu PUBLIC cxx_std_17)
target_compile_options(lockstep_cuda_emu PRIVATE -Wall -Wextra)
target_link_libraries(lockstep_cuda_emu PUBLIC Threads::Threads)
# A sanitizer build instruments the emulator too: under ASan, device memory comes from ASan's
# allocator, so kernels reading out of bounds are reported (docs/cuda_emulation.md).
if(LOCKSTEP_SANITIZE)
  target_compile_options(lockstep_cuda_emu PRIVATE -fsanitize=${LOCKSTEP_SANITIZE}
                         -fno-sanitize-recover=all -fno-omit-frame-pointer -g1)
  target_link_options(lockstep_cuda_emu PRIVATE -fsanitize=${LOCKSTEP_SANITIZE})
endif()
foreach(lib cudart cublas)  # and NCCL::nccl below
  add_library(CUDA::${lib} INTERFACE IMPORTED GLOBAL)
  set_target_properties(CUDA::${lib} PROPERTIES INTERFACE_LINK_LIBRARIES lockstep_cuda_emu)
endforeach()

# NCCL between the processes of one machine (emu/src/nccl.cpp): the nccl communicator runs too.
set(NCCL_FOUND ON)
add_library(NCCL::nccl INTERFACE IMPORTED GLOBAL)
set_target_properties(NCCL::nccl PROPERTIES INTERFACE_LINK_LIBRARIES lockstep_cuda_emu)

# lockstep_emu_translate(<out-var> <file.cu>...): the C++ translations of the .cu files (in the
# build tree, regenerated when the source or the translator changes).
function(lockstep_emu_translate out_var)
  set(outputs)
  foreach(cu ${ARGN})
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${cu})
    set(cpp ${PROJECT_BINARY_DIR}/emu/${rel}.cpp)
    add_custom_command(OUTPUT ${cpp}
      COMMAND Python3::Interpreter ${PROJECT_SOURCE_DIR}/emu/translate_cu.py ${cu} ${cpp}
      DEPENDS ${cu} ${PROJECT_SOURCE_DIR}/emu/translate_cu.py
      COMMENT "Translating ${rel} for the CUDA emulator" VERBATIM)
    list(APPEND outputs ${cpp})
  endforeach()
  set(${out_var} ${outputs} PARENT_SCOPE)
endfunction()

# LOCKSTEP_EMU_FMA: kernels fuse a * b + c into FMAs as nvcc's device code does by default
# (--fmad=true), so a parity test that holds only without fusion fails here as on a GPU. Needs an
# x86-64 machine that runs FMA code (-mfma): AUTO checks that it does.
include(CheckCXXSourceRuns)
set(CMAKE_REQUIRED_FLAGS "-mfma")
check_cxx_source_runs([[
#include <cmath>
int main(int argc, char**) {
  float x = static_cast<float>(argc);
  asm volatile("" : "+x"(x));
  return std::fma(x, x, -x) == 0.0f ? 0 : 1;
}]] LOCKSTEP_EMU_HOST_RUNS_FMA)
unset(CMAKE_REQUIRED_FLAGS)
if(LOCKSTEP_EMU_FMA STREQUAL "AUTO")
  set(LOCKSTEP_EMU_FMA_ENABLED OFF)
  if(LOCKSTEP_EMU_HOST_RUNS_FMA)
    set(LOCKSTEP_EMU_FMA_ENABLED ON)
  endif()
elseif(LOCKSTEP_EMU_FMA)
  if(NOT LOCKSTEP_EMU_HOST_RUNS_FMA)
    message(FATAL_ERROR "LOCKSTEP_EMU_FMA=ON: this machine cannot build and run x86-64 FMA code")
  endif()
  set(LOCKSTEP_EMU_FMA_ENABLED ON)
else()
  set(LOCKSTEP_EMU_FMA_ENABLED OFF)
endif()
message(STATUS "lockstep: CUDA emulation fuses a*b+c in kernels (LOCKSTEP_EMU_FMA): ${LOCKSTEP_EMU_FMA_ENABLED}")

# The race check (emu/src/racecheck.cpp): code compiled with GCC's ThreadSanitizer
# instrumentation calls the emulator's own __tsan_* functions, which find threads of a launch
# that race on global or shared memory. The emulator always has them (with GCC, and unless the
# build is a ThreadSanitizer build, whose runtime defines them); the emulator's tests are always
# instrumented, lockstep's kernels where LOCKSTEP_EMU_RACECHECK is on (about 10x slower).
set(LOCKSTEP_EMU_RACECHECK_HOOKS OFF)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT LOCKSTEP_SANITIZE MATCHES "thread")
  set(LOCKSTEP_EMU_RACECHECK_HOOKS ON)
  set_property(SOURCE ${PROJECT_SOURCE_DIR}/emu/src/racecheck.cpp APPEND PROPERTY
               COMPILE_DEFINITIONS LOCKSTEP_EMU_RACECHECK=1)
endif()
if(LOCKSTEP_EMU_RACECHECK AND NOT LOCKSTEP_EMU_RACECHECK_HOOKS)
  message(FATAL_ERROR "LOCKSTEP_EMU_RACECHECK needs GCC and no LOCKSTEP_SANITIZE=thread")
endif()
message(STATUS "lockstep: CUDA emulation checks lockstep's kernels for data races (LOCKSTEP_EMU_RACECHECK): ${LOCKSTEP_EMU_RACECHECK}")

# lockstep_emu_kernels([RACECHECK] <file.cu.cpp>...): the options of translated kernels.
#  - Where LOCKSTEP_EMU_FMA is on, they fuse as described above; the _rn intrinsics stay unfused
#    (emu/include/lockstep_emu/device.h). The options come after the -ffp-contract=off every
#    target gets, so they win; -fexpensive-optimizations makes GCC fuse at -O1 too (the tests'
#    level).
#  - Where LOCKSTEP_EMU_RACECHECK is on (or RACECHECK is given and the emulator has the race
#    check's hooks), every load and store is instrumented for the race check (see above).
function(lockstep_emu_kernels)
  cmake_parse_arguments(ARG "RACECHECK" "" "" ${ARGN})
  set(options)
  set(definitions)
  if(LOCKSTEP_EMU_FMA_ENABLED)
    list(APPEND options -ffp-contract=fast -mfma -fexpensive-optimizations)
    list(APPEND definitions LOCKSTEP_EMU_FMA=1)
  endif()
  if(LOCKSTEP_EMU_RACECHECK OR (ARG_RACECHECK AND LOCKSTEP_EMU_RACECHECK_HOOKS))
    list(APPEND options -fsanitize=thread --param=tsan-instrument-func-entry-exit=0
         --param=tsan-distinguish-volatile=1 -g1)  # -g1: line tables, for the reports
    list(APPEND definitions LOCKSTEP_EMU_RACECHECK=1)
  endif()
  if(options)
    set_source_files_properties(${ARG_UNPARSED_ARGUMENTS} PROPERTIES COMPILE_OPTIONS "${options}"
                                COMPILE_DEFINITIONS "${definitions}")
  endif()
endfunction()

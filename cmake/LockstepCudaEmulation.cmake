# LOCKSTEP_CUDA_EMULATION=ON: lockstep's CUDA code paths built with the host compiler against its
# emulator of the CUDA runtime, cuBLAS, CUB and NCCL (emu/, docs/cuda_emulation.md). The
# emulator stands in for the CUDA::cudart, CUDA::cublas and NCCL::nccl targets; .cu files become C++ through
# emu/translate_cu.py (lockstep_emu_translate).

find_package(Python3 REQUIRED COMPONENTS Interpreter)

# Shared: the library and the tests that call CUDA themselves must see one emulated device.
add_library(lockstep_cuda_emu SHARED
            ${PROJECT_SOURCE_DIR}/emu/src/runtime.cpp ${PROJECT_SOURCE_DIR}/emu/src/fiber.cpp
            ${PROJECT_SOURCE_DIR}/emu/src/cublas.cpp ${PROJECT_SOURCE_DIR}/emu/src/nccl.cpp)
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

# The installed package, as a user gets it (docs/packaging.md). Invoked by ctest with
# -DSOURCE_DIR -DBINARY_DIR -DWORK_DIR -DGENERATOR -DCXX -DVERSION, -DCUDA (ON when lockstep was
# built with CUDA), -DEXAMPLES (ON when the tools were built) and the GNUInstallDirs -DLIBDIR
# -DBINDIR -DINCLUDEDIR -DDATADIR:
#   1. installs into a scratch prefix, then moves the prefix elsewhere: nothing may depend on
#      the path it was installed to;
#   2. runs the installed tools with LD_LIBRARY_PATH unset: --version, a short training run on
#      generated data with an installed config, and one on the installed CSV sample;
#   3. checks the CMake package's compatibility rule (same 0.<minor> while the major is 0);
#   4. configures, builds and runs test/consumer with find_package(lockstep): without the CUDA
#      toolkit (find_package(CUDAToolkit) disabled, no nvcc on PATH) when lockstep has CUDA;
#   5. builds and runs the same program with `pkg-config --cflags --libs lockstep`.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
# Every step runs without LD_LIBRARY_PATH (a prefix off the loader path) and, for a CUDA build,
# with the CUDA toolkit's directories off PATH and CUDAToolkit_ROOT/CUDA_PATH pointing nowhere.
set(clean_env --unset=LD_LIBRARY_PATH --unset=CUDACXX --unset=CUDA_HOME
              CUDAToolkit_ROOT=${WORK_DIR}/no-cuda CUDA_PATH=${WORK_DIR}/no-cuda)
set(path "$ENV{PATH}")
string(REPLACE ":" ";" path "${path}")
list(FILTER path EXCLUDE REGEX "cuda")
string(REPLACE ";" ":" path "${path}")
list(APPEND clean_env "PATH=${path}")

function(run_step)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${clean_env} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${ARGN}:\n${out}")
  set(step_output "${out}${err}" PARENT_SCOPE)
endfunction()
function(expect what text)
  string(FIND "${step_output}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${what}: no '${text}' in its output:\n${step_output}")
  endif()
endfunction()

# 1. Install, then move: a run path or a file naming the install path would break here.
run_step(${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/installed)
file(RENAME ${WORK_DIR}/installed ${WORK_DIR}/moved)
set(prefix ${WORK_DIR}/moved)
set(data ${prefix}/${DATADIR}/lockstep/data)
set(configs ${prefix}/${DATADIR}/lockstep/configs)
foreach(f ${data}/ads-train.csv ${data}/ads.schema.toml ${configs}/demo.toml
          ${prefix}/${LIBDIR}/pkgconfig/lockstep.pc ${prefix}/${INCLUDEDIR}/lockstep/version.h)
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# 2. The tools.
if(EXAMPLES)
  foreach(tool train predict datagen data eval)
    run_step(${prefix}/${BINDIR}/lockstep-${tool} --version)
    expect("lockstep-${tool} --version" "${VERSION}")
  endforeach()
  set(train ${prefix}/${BINDIR}/lockstep-train --device cpu --log-every 0)
  run_step(${train} --synthetic demo --train-samples 2000 --test-samples 500
           --config ${configs}/demo.toml)
  expect("lockstep-train --synthetic demo" "result: AUC")
  run_step(${train} --schema ${data}/ads.schema.toml --train ${data}/ads-train.csv
           --test ${data}/ads-test.csv --batch-size 64 --table-rows 4096)
  expect("lockstep-train on the installed sample" "epoch 1 trained on 5000 samples")
  # The model saved there, evaluated by the installed lockstep-eval (model.toml, schema.toml).
  run_step(${train} --schema ${data}/ads.schema.toml --train ${data}/ads-train.csv
           --valid ${data}/ads-valid.csv --batch-size 64 --table-rows 4096
           --save ${WORK_DIR}/saved-model)
  run_step(${prefix}/${BINDIR}/lockstep-eval --device cpu --model ${WORK_DIR}/saved-model
           --data ${data}/ads-test.csv)
  expect("lockstep-eval of the saved model" "model: AUC")
endif()

# 3. Compatibility: the same 0.<minor>, any later patch.
string(REPLACE "." ";" v "${VERSION}")
list(GET v 0 major)
list(GET v 1 minor)
math(EXPR next_minor "${minor} + 1")
foreach(asked "${major}.${minor}" "${major}.${minor}.0" "${major}.${next_minor}"
              "${major}.${minor}.999")
  string(REPLACE "." ";" a "${asked}.0.0")
  list(GET a 0 PACKAGE_FIND_VERSION_MAJOR)
  list(GET a 1 PACKAGE_FIND_VERSION_MINOR)
  list(GET a 2 PACKAGE_FIND_VERSION_PATCH)
  set(PACKAGE_FIND_VERSION ${asked})
  set(PACKAGE_FIND_VERSION_COUNT 2)
  set(PACKAGE_FIND_VERSION_RANGE FALSE)
  set(PACKAGE_VERSION_COMPATIBLE)
  include(${prefix}/${LIBDIR}/cmake/lockstep/lockstepConfigVersion.cmake)
  set(want TRUE)
  if(asked STREQUAL "${major}.${next_minor}" OR asked STREQUAL "${major}.${minor}.999")
    set(want FALSE)
  endif()
  if(major EQUAL 0 AND NOT PACKAGE_VERSION_COMPATIBLE STREQUAL want)
    message(FATAL_ERROR "find_package(lockstep ${asked}) with lockstep ${VERSION} installed: "
                        "compatible = ${PACKAGE_VERSION_COMPATIBLE}, expected ${want}")
  endif()
endforeach()

# 4. find_package(lockstep), without CUDA.
set(no_cuda)
if(CUDA)
  set(no_cuda -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON -DCMAKE_DISABLE_FIND_PACKAGE_CUDA=ON)
endif()
# No build type: main.cpp compiles at -O0, quickly (the optimised library does the work).
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/consumer -B ${WORK_DIR}/build -G ${GENERATOR}
         -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=
         ${no_cuda})
expect("the consumer's configuration" "lockstep ${VERSION} (CUDA ${CUDA})")
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run_step(${WORK_DIR}/build/consumer ${data})
expect("the consumer" "lockstep ${VERSION} (headers ${VERSION}) consumer")

# 5. pkg-config.
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found: install it (scripts/deps.sh does)")
endif()
list(APPEND clean_env PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig)
run_step(${PKG_CONFIG} --modversion lockstep)
string(STRIP "${step_output}" pc_version)
if(NOT pc_version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config --modversion lockstep: ${pc_version}, expected ${VERSION}")
endif()
run_step(${PKG_CONFIG} --cflags --libs lockstep)
separate_arguments(pc_flags UNIX_COMMAND "${step_output}")
run_step(${PKG_CONFIG} --variable=libdir lockstep)
string(STRIP "${step_output}" pc_libdir)
run_step(${CXX} -std=c++17 ${SOURCE_DIR}/test/consumer/main.cpp -o ${WORK_DIR}/consumer-pc
         ${pc_flags} -Wl,-rpath,${pc_libdir})
run_step(${WORK_DIR}/consumer-pc ${data})
expect("the pkg-config consumer" "lockstep ${VERSION} (headers ${VERSION}) consumer")

# Installs the library, public headers, a CMake package and a pkg-config file, so that another
# project can
#   find_package(lockstep 0.1 REQUIRED)  and  target_link_libraries(app PRIVATE lockstep::lockstep)
# or  c++ app.cpp $(pkg-config --cflags --libs lockstep)
# Compatibility policy (docs/packaging.md): while the major version is 0, every 0.x minor release
# may break the ABI and the API, so the SONAME is liblockstep.so.0.<minor> and the CMake package
# accepts only the same 0.<minor> (any patch at least the one asked for); from 1.0 on, the SONAME
# is liblockstep.so.<major> and the package accepts any later release of the same major version.
include(CMakePackageConfigHelpers)
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(LOCKSTEP_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  set(LOCKSTEP_COMPATIBILITY SameMinorVersion)
else()
  set(LOCKSTEP_SOVERSION ${PROJECT_VERSION_MAJOR})
  set(LOCKSTEP_COMPATIBILITY SameMajorVersion)
endif()

# Installed programs and the library find what they need from any prefix: the tools find
# liblockstep through a run path relative to their own directory ($ORIGIN), and both keep the
# directories of the libraries they link outside the system's (CUDA, NCCL, OpenBLAS, MPI).
file(RELATIVE_PATH LOCKSTEP_BIN_TO_LIB ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
set(LOCKSTEP_TOOL_INSTALL_RPATH "$ORIGIN/${LOCKSTEP_BIN_TO_LIB}")
set_target_properties(lockstep PROPERTIES
  VERSION ${PROJECT_VERSION} SOVERSION ${LOCKSTEP_SOVERSION}
  INSTALL_RPATH "$ORIGIN" INSTALL_RPATH_USE_LINK_PATH TRUE)
install(TARGETS lockstep EXPORT lockstepTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY lib/include/lockstep DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/lockstep/config.h
              ${PROJECT_BINARY_DIR}/include/lockstep/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lockstep)
install(EXPORT lockstepTargets NAMESPACE lockstep::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lockstep)
configure_package_config_file(cmake/lockstepConfig.cmake.in
  ${PROJECT_BINARY_DIR}/lockstepConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lockstep)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lockstepConfigVersion.cmake
  COMPATIBILITY ${LOCKSTEP_COMPATIBILITY})
install(FILES ${PROJECT_BINARY_DIR}/lockstepConfig.cmake
              ${PROJECT_BINARY_DIR}/lockstepConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lockstep)

# pkg-config: relocatable (paths relative to the .pc file), so `cmake --install --prefix P`
# works for any P. The shared library carries its private dependencies (NEEDED and RUNPATH),
# so only those of the public headers are listed: fmt and spdlog.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(LOCKSTEP_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(LOCKSTEP_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(LOCKSTEP_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH pc_to_prefix /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
  set(LOCKSTEP_PC_PREFIX "\${pcfiledir}/${pc_to_prefix}")
  set(LOCKSTEP_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(LOCKSTEP_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/lockstep.pc.in ${PROJECT_BINARY_DIR}/lockstep.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/lockstep.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

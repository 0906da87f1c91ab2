# cmake --install: the tools, the library (static) with its headers, find_package(pconv) and
# pkg-config files, and the bundled model with its card in share/pconv/ (docs/install.md).
# Installed tools find the model relative to themselves (apps/inference/bundled_model.h), so a
# prefix can be moved or packaged as it is. Also CPack's .deb (scripts/package).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(PCONV_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/pconv)
set(PCONV_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/pconv)
set(PCONV_INSTALL_MODELDIR ${CMAKE_INSTALL_DATADIR}/pconv)

# ---- the tools (the page of inpaint-serve is embedded in its binary: no asset files)
foreach(app_src ${PCONV_APPS})
  get_filename_component(app ${app_src} NAME_WE)
  # CUDA's libraries often live outside the loader's paths (/usr/local/cuda): keep them findable.
  set_target_properties(${app} PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS ${app} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endforeach()

# ---- the library: the engine and the two apps' libraries the embedding API needs. Exported
# as pconv::core, pconv::cli and pconv::inference; pconv::pconv is all of them.
add_library(pconv_package INTERFACE)
target_link_libraries(pconv_package INTERFACE pconv_inference)
set_target_properties(pconv PROPERTIES EXPORT_NAME core)
set_target_properties(pconv_cli PROPERTIES EXPORT_NAME cli)
set_target_properties(pconv_inference PROPERTIES EXPORT_NAME inference)
set_target_properties(pconv_package PROPERTIES EXPORT_NAME pconv)
install(TARGETS pconv pconv_cli pconv_inference pconv_package EXPORT pconvTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Headers keep their source-tree paths below include/pconv/ ("core/tensor.h", ...), the one
# include folder pconv::pconv and pconv.pc give.
install(DIRECTORY core layers losses models DESTINATION ${PCONV_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(DIRECTORY apps/cli apps/inference DESTINATION ${PCONV_INSTALL_INCLUDEDIR}/apps
        FILES_MATCHING PATTERN "*.h")

# ---- find_package(pconv): the targets, and the dependencies their link lines name
install(EXPORT pconvTargets NAMESPACE pconv:: DESTINATION ${PCONV_INSTALL_CMAKEDIR})
set(PCONV_CUDA_ROOT "")
if(PCONV_HAVE_CUDA)
  get_filename_component(PCONV_CUDA_ROOT "${CUDAToolkit_BIN_DIR}" DIRECTORY)
endif()
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/pconvConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/pconvConfig.cmake
  INSTALL_DESTINATION ${PCONV_INSTALL_CMAKEDIR}
  PATH_VARS PCONV_INSTALL_MODELDIR)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/pconvConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pconvConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/pconvConfigVersion.cmake
        DESTINATION ${PCONV_INSTALL_CMAKEDIR})

# ---- pkg-config: the same flags for other build systems. Relative to the .pc file's folder,
# so a moved prefix still works.
file(RELATIVE_PATH _pc_prefix "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
set(_pc_requires "eigen3 zlib")
set(_pc_cflags "${OpenMP_CXX_FLAGS}")
foreach(_flag ${PCONV_CPU_FLAGS})
  string(APPEND _pc_cflags " ${_flag}")
endforeach()
foreach(_dir ${STB_INCLUDE_DIR} ${NLOHMANN_JSON_INCLUDE_DIR})
  if(NOT _dir STREQUAL "/usr/include")
    string(APPEND _pc_cflags " -I${_dir}")
  endif()
endforeach()
set(_pc_libs "")
if(PCONV_HAVE_WEBP)
  string(APPEND _pc_requires " libwebp libwebpdemux libwebpmux")
endif()
if(PCONV_HAVE_LIBZIP)
  string(APPEND _pc_libs " ${LIBZIP_LIBRARY}")
endif()
if(PCONV_HAVE_MPI)
  foreach(_lib ${MPI_CXX_LIBRARIES})
    string(APPEND _pc_libs " ${_lib}")
  endforeach()
endif()
if(PCONV_HAVE_CUDA)
  string(APPEND _pc_cflags " -DPCONV_HAS_CUDA=1")
  string(APPEND _pc_libs " ${CUDA_cudart_LIBRARY} ${CUDA_cublas_LIBRARY} ${CUDNN_LIBRARY} -Wl,-rpath,${CUDAToolkit_LIBRARY_DIR}")
endif()
if(PCONV_HAVE_NCCL)
  string(APPEND _pc_libs " ${NCCL_LIBRARY}")
endif()
string(APPEND _pc_libs " ${OpenMP_CXX_FLAGS} -pthread")
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/pconv.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pconv.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pconv.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- the bundled model(s) and the card with what it links (not the trials of other runs)
install(DIRECTORY data/model/ DESTINATION ${PCONV_INSTALL_MODELDIR}
        FILES_MATCHING PATTERN "*.safetensors" PATTERN "*.md" PATTERN "*.jpg" PATTERN "*.png" PATTERN "*.csv"
        PATTERN "trials" EXCLUDE)

# What an install needs built (scripts/package builds only this, not the tests).
set(_installed pconv pconv_cli pconv_inference)
foreach(app_src ${PCONV_APPS})
  get_filename_component(app ${app_src} NAME_WE)
  list(APPEND _installed ${app})
endforeach()
add_custom_target(pconv_installed DEPENDS ${_installed})

# ---- scripts/package: a .deb of all of the above
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pconv)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "pconv maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Image inpainting with partial convolutions: tools, library and a pretrained model")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION graphics)
# The shared libraries the tools link, from dpkg-shlibdeps; CUDA's come from NVIDIA's
# installer, not from a Debian package, so no package can be named for them.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(PCONV_HAVE_CUDA)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib)
endif()
# Building against the library needs the headers its headers include.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libeigen3-dev, libstb-dev, nlohmann-json3-dev, zlib1g-dev")
if(PCONV_HAVE_WEBP)
  string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libwebp-dev, pkg-config")
endif()
if(PCONV_HAVE_LIBZIP)
  string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libzip-dev")
endif()
if(PCONV_HAVE_MPI)
  string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libopenmpi-dev")
endif()
include(CPack)

# Finds MPI (Debian: libopenmpi-dev, openmpi-bin) for data-parallel training, and NCCL next to
# the CUDA toolkit; defines PCONV_HAVE_MPI, PCONV_HAVE_NCCL and pconv_add_distributed(target).
# PCONV_MPI / PCONV_NCCL: AUTO builds the part when found, ON insists, OFF skips. Without MPI
# the library has the single-process communicator only (core/distributed/communicator.cpp), and a build
# and a run are what they were before data parallelism existed.
set(PCONV_HAVE_MPI OFF)
set(PCONV_HAVE_NCCL OFF)
if(NOT PCONV_MPI STREQUAL "OFF")
  set(MPI_CXX_SKIP_MPICXX ON)  # MPI's C API from C++; not the deprecated C++ bindings
  find_package(MPI COMPONENTS CXX QUIET)
  if(MPI_CXX_FOUND)
    set(PCONV_HAVE_MPI ON)
    message(STATUS "pconv: MPI on (MPI ${MPI_CXX_VERSION}, launcher ${MPIEXEC_EXECUTABLE})")
  elseif(PCONV_MPI STREQUAL "ON")
    message(FATAL_ERROR "PCONV_MPI=ON but MPI was not found: install the Debian packages libopenmpi-dev and openmpi-bin")
  else()
    message(STATUS "pconv: MPI off (not found: install libopenmpi-dev and openmpi-bin for multi-process training)")
  endif()
endif()

# NCCL all-reduces GPU tensors; it needs the CUDA backend, and MPI to start the ranks.
if(NOT PCONV_NCCL STREQUAL "OFF")
  set(_why "")
  if(NOT PCONV_HAVE_CUDA)
    set(_why "no CUDA backend")
  elseif(NOT PCONV_HAVE_MPI)
    set(_why "no MPI")
  else()
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
    find_library(NCCL_LIBRARY nccl
      HINTS ${NCCL_ROOT}/lib ${NCCL_ROOT}/lib64 ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib
            ${CUDAToolkit_LIBRARY_ROOT}/lib64 /usr/lib/x86_64-linux-gnu)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(PCONV_HAVE_NCCL ON)
      message(STATUS "pconv: NCCL on (${NCCL_LIBRARY})")
    else()
      set(_why "nccl.h or libnccl not found (set NCCL_ROOT)")
    endif()
  endif()
  if(NOT PCONV_HAVE_NCCL)
    if(PCONV_NCCL STREQUAL "ON")
      message(FATAL_ERROR "PCONV_NCCL=ON but ${_why}")
    endif()
    if(PCONV_HAVE_CUDA AND PCONV_HAVE_MPI)
      string(APPEND _why "; GPU gradients go through host memory and MPI")
    endif()
    message(STATUS "pconv: NCCL off (${_why})")
  endif()
endif()

# MPI's and NCCL's headers and flags reach only the file that uses them (an object library
# each); `target` links them. So building with them recompiles nothing else.
function(pconv_add_distributed target)
  set(_defines "")
  if(PCONV_HAVE_MPI)
    add_library(pconv_mpi OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/core/distributed/mpi_communicator.cpp)
    target_include_directories(pconv_mpi PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(pconv_mpi PRIVATE MPI::MPI_CXX)
    target_compile_options(pconv_mpi PRIVATE ${PCONV_WARNINGS} ${PCONV_CPU_FLAGS})
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:pconv_mpi>)
    target_link_libraries(${target} PRIVATE $<LINK_ONLY:MPI::MPI_CXX>)
    list(APPEND _defines PCONV_HAS_MPI=1)
  endif()
  if(PCONV_HAVE_NCCL)
    add_library(pconv_nccl OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/cuda/nccl_communicator.cpp)
    target_include_directories(pconv_nccl PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    target_include_directories(pconv_nccl SYSTEM PRIVATE ${NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
    target_compile_options(pconv_nccl PRIVATE ${PCONV_WARNINGS} ${PCONV_CPU_FLAGS})
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:pconv_nccl>)
    target_link_libraries(${target} PRIVATE ${NCCL_LIBRARY})
    list(APPEND _defines PCONV_HAS_NCCL=1)
  endif()
  # Only the factory needs to know what was built (core/distributed/communicator.cpp).
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/core/distributed/communicator.cpp PROPERTIES
    COMPILE_DEFINITIONS "${_defines}")
endfunction()

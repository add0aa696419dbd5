# CUDA backend detection. PGOLF_CUDA=AUTO builds it when nvcc is found, ON requires it,
# OFF skips it. Device code targets sm_90a (H100) only; host and device warnings are errors.
set(PGOLF_WITH_CUDA OFF)
if(NOT PGOLF_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(PGOLF_WITH_CUDA ON)
  elseif(PGOLF_CUDA STREQUAL "ON")
    message(FATAL_ERROR "PGOLF_CUDA=ON but no CUDA compiler (nvcc) was found; "
                        "install the CUDA toolkit or configure with -DPGOLF_CUDA=OFF")
  else()
    message(STATUS "pgolf: nvcc not found, building without the CUDA backend")
  endif()
endif()

if(PGOLF_WITH_CUDA)
  # H100 (sm_90a) is the target; a user may ask for other architectures explicitly.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90a)
  endif()
  enable_language(CUDA)
  # CMake 3.25 predates nvcc's C++20 support; tell it the flag (nvcc >= 12 accepts it).
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  get_filename_component(_pgolf_cuda_root "${CUDAToolkit_BIN_DIR}/.." ABSOLUTE)
  find_library(PGOLF_NCCL_LIBRARY nccl
    HINTS ${CUDAToolkit_LIBRARY_DIR} ${_pgolf_cuda_root}/lib ${_pgolf_cuda_root}/lib64)
  find_path(PGOLF_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${_pgolf_cuda_root}/include)
  if(NOT PGOLF_NCCL_LIBRARY OR NOT PGOLF_NCCL_INCLUDE)
    if(PGOLF_CUDA STREQUAL "ON")
      message(FATAL_ERROR "PGOLF_CUDA=ON but NCCL (nccl.h, libnccl) was not found next to the CUDA toolkit "
                          "at ${_pgolf_cuda_root}; install NCCL or configure with -DPGOLF_CUDA=OFF")
    endif()
    message(WARNING "pgolf: nvcc found but NCCL is missing; building without the CUDA backend")
    set(PGOLF_WITH_CUDA OFF)
  endif()
endif()

if(PGOLF_WITH_CUDA)

  add_library(pgolf_cuda STATIC src/backend/cuda/cuda_runtime_probe.cu)
  target_include_directories(pgolf_cuda PUBLIC ${CMAKE_SOURCE_DIR}/src PRIVATE ${PGOLF_NCCL_INCLUDE})
  target_compile_options(pgolf_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
    "$<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${PGOLF_WERROR}>>:--Werror=all-warnings;-Xcompiler=-Werror>")
  target_link_libraries(pgolf_cuda PUBLIC CUDA::cudart_static CUDA::cublasLt ${PGOLF_NCCL_LIBRARY})
  message(STATUS "pgolf: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${PGOLF_NCCL_LIBRARY})")
endif()

# Generates version_info.cpp at every build (not only at configure time) so that
# `pgolf --version` always names the commit the binary was built from.
set(PGOLF_VERSION_CPP ${CMAKE_CURRENT_BINARY_DIR}/generated/version_info.cpp)
if(PGOLF_WITH_CUDA)
  set(_pgolf_cuda_desc "CUDA ${CMAKE_CUDA_COMPILER_VERSION}, sm_${CMAKE_CUDA_ARCHITECTURES}, cuBLASLt, NCCL")
else()
  set(_pgolf_cuda_desc "")
endif()
add_custom_target(pgolf_version
  COMMAND ${CMAKE_COMMAND}
    -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
    -DOUTPUT=${PGOLF_VERSION_CPP}
    -DTEMPLATE=${CMAKE_SOURCE_DIR}/cmake/version_info.cpp.in
    -DPGOLF_VERSION=${PROJECT_VERSION}
    -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
    -DCXX_COMPILER=${CMAKE_CXX_COMPILER_ID}\ ${CMAKE_CXX_COMPILER_VERSION}
    -DCUDA_DESC=${_pgolf_cuda_desc}
    -DSENTENCEPIECE_VERSION=${SENTENCEPIECE_VERSION}
    -DLZMA_VERSION=${LZMA_VERSION}
    -DBROTLI_VERSION=${BROTLI_libbrotlienc_VERSION}
    -P ${CMAKE_SOURCE_DIR}/cmake/WriteVersion.cmake
  BYPRODUCTS ${PGOLF_VERSION_CPP}
  COMMENT "pgolf: stamping version"
  VERBATIM)

# The dependencies from a vendor folder instead of the system (configure with
# -DPGOLF_VENDOR_DIR=DIR): the device bundle carries them (scripts/device_bundle.sh) so that pgolf
# can be built on a GPU machine that has the CUDA toolkit, CMake, Ninja and g++ but none of the
# Debian packages. DIR holds
#   include/         the headers of CLI11, nlohmann-json, SentencePiece, liblzma, brotli, OpenBLAS
#                    (cblas.h) and GoogleTest
#   lib/             libgtest.a and libgtest_main.a
#   versions.cmake   the packages' versions (for `pgolf --version`)
# and PGOLF_VENDOR_SHARED_DIR the shared libraries of the others (the bundle's lib.tar.xz as
# run.sh unpacks it; run.sh --build passes both). The
# targets made here are the ones the find_package / pkg_check_modules calls of CMakeLists.txt
# make, so nothing else changes.
set(PGOLF_VENDOR_SHARED_DIR "" CACHE PATH "Shared libraries of the vendored dependencies")
if(NOT PGOLF_VENDOR_SHARED_DIR)
  message(FATAL_ERROR "PGOLF_VENDOR_DIR needs PGOLF_VENDOR_SHARED_DIR: the folder of the dependencies' shared libraries "
                      "(the bundle's run.sh --build passes it)")
endif()
get_filename_component(_vendor "${PGOLF_VENDOR_DIR}" ABSOLUTE)
get_filename_component(_shared "${PGOLF_VENDOR_SHARED_DIR}" ABSOLUTE)
if(NOT EXISTS "${_vendor}/include/CLI/CLI.hpp" OR NOT EXISTS "${_vendor}/versions.cmake")
  message(FATAL_ERROR "PGOLF_VENDOR_DIR=${PGOLF_VENDOR_DIR} is not a vendor folder (include/CLI/CLI.hpp and "
                      "versions.cmake missing; scripts/device_bundle.sh makes one)")
endif()
include("${_vendor}/versions.cmake")

# pgolf_vendored(TARGET LIBRARY...): an interface target with the vendored headers and the
# shared libraries (by file name in the shared folder).
function(pgolf_vendored target)
  set(libs)
  foreach(name IN LISTS ARGN)
    if(NOT EXISTS "${_shared}/${name}")
      message(FATAL_ERROR "vendored ${target}: ${_shared}/${name} is missing (the bundle's run.sh unpacks lib.tar.xz there)")
    endif()
    list(APPEND libs "${_shared}/${name}")
  endforeach()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_vendor}/include"
                                             INTERFACE_LINK_LIBRARIES "${libs}")
endfunction()

pgolf_vendored(nlohmann_json::nlohmann_json)
pgolf_vendored(CLI11::CLI11)
pgolf_vendored(PkgConfig::SENTENCEPIECE libsentencepiece.so.0 libsentencepiece_train.so.0)
pgolf_vendored(PkgConfig::LZMA liblzma.so.5)
pgolf_vendored(PkgConfig::BROTLI libbrotlienc.so.1 libbrotlidec.so.1 libbrotlicommon.so.1)
pgolf_vendored(PkgConfig::OPENBLAS libopenblas.so.0)

find_package(Threads REQUIRED)
foreach(part gtest gtest_main)
  add_library(GTest::${part} STATIC IMPORTED GLOBAL)
  set_target_properties(GTest::${part} PROPERTIES IMPORTED_LOCATION "${_vendor}/lib/lib${part}.a"
                                                  INTERFACE_INCLUDE_DIRECTORIES "${_vendor}/include"
                                                  INTERFACE_LINK_LIBRARIES Threads::Threads)
endforeach()
set_property(TARGET GTest::gtest_main APPEND PROPERTY INTERFACE_LINK_LIBRARIES GTest::gtest)
message(STATUS "pgolf: dependencies from ${_vendor} (headers) and ${_shared} (shared libraries)")

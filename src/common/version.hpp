#pragma once
// Build identification, generated at build time (cmake/version_info.cpp.in).
#include <string_view>

namespace pgolf {

struct BuildInfo {
  std::string_view version;
  std::string_view git_hash;        // 12 hex digits, "-dirty" when built from a modified tree
  std::string_view build_type;
  std::string_view cxx_compiler;
  std::string_view cuda;            // empty when built without the CUDA backend
  std::string_view sentencepiece;
  std::string_view lzma;
  std::string_view brotli;
};

const BuildInfo& build_info();

}  // namespace pgolf

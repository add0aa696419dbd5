#pragma once
// Code accounting (SPEC 5.3): the source files needed to build and run the evaluator, packed
// as a tar archive with fixed metadata (sorted paths, mtime 0, uid/gid 0, mode 0644) and
// compressed with xz -9, so the same sources give the same bytes on every machine.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/files.hpp"

namespace pgolf::exporter {

// CMakeLists.txt, cmake/, src/ and kernels/ (when present) under `root`, as sorted relative paths.
std::vector<std::string> evaluator_sources(const fs::path& root);

// The compressed bundle of those files (tar.xz); Error(io) naming `root` when it is not a
// pgolf source tree.
std::vector<std::byte> make_code_bundle(const fs::path& root);

// The members of a bundle, in order: relative path (under "pgolf/") and contents. Error(format)
// naming `origin` for a corrupted bundle or a member path that would escape its directory.
struct BundleMember {
  std::string path;
  std::string contents;
};
std::vector<BundleMember> read_code_bundle(std::span<const std::byte> bundle, const std::string& origin);

// The pgolf source tree: $PGOLF_SOURCE_DIR when set (a copy of the tree, as in the device
// bundle of scripts/device_bundle.sh), else the one this binary was built from.
fs::path default_source_dir();

}  // namespace pgolf::exporter

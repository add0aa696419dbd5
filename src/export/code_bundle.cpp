#include "export/code_bundle.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>

#include "common/error.hpp"
#include "export/artifact.hpp"

namespace pgolf::exporter {

namespace {

constexpr std::size_t kBlock = 512;

void octal(char* field, std::size_t width, std::uint64_t value) {
  // width - 1 digits and a NUL, zero-padded
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
}

void tar_member(std::vector<std::byte>& out, const std::string& name, const std::string& contents) {
  char h[kBlock] = {};
  std::string prefix, base = name;
  if (name.size() > 100) {  // ustar: split at a '/' into prefix (155) and name (100)
    const auto cut = name.rfind('/', 155);
    if (cut == std::string::npos || name.size() - cut - 1 > 100)
      fail(ErrorKind::internal, "code bundle: path too long for tar: ", name);
    prefix = name.substr(0, cut);
    base = name.substr(cut + 1);
  }
  std::memcpy(h, base.data(), base.size());
  octal(h + 100, 8, 0644);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, contents.size());
  octal(h + 136, 12, 0);  // mtime 0: reproducible
  std::memset(h + 148, ' ', 8);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memcpy(h + 345, prefix.data(), prefix.size());
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h + 148, 8, "%06o", sum);
  const auto* hp = reinterpret_cast<const std::byte*>(h);
  out.insert(out.end(), hp, hp + kBlock);
  const auto* cp = reinterpret_cast<const std::byte*>(contents.data());
  out.insert(out.end(), cp, cp + contents.size());
  out.resize(out.size() + (kBlock - contents.size() % kBlock) % kBlock, std::byte{0});
}

}  // namespace

std::vector<std::string> evaluator_sources(const fs::path& root) {
  std::vector<std::string> files;
  for (const char* f : {"CMakeLists.txt"})
    if (fs::is_regular_file(root / f)) files.emplace_back(f);
  for (const char* dir : {"cmake", "src", "kernels"}) {
    if (!fs::is_directory(root / dir)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / dir))
      if (e.is_regular_file()) files.push_back(fs::relative(e.path(), root).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::byte> make_code_bundle(const fs::path& root) {
  if (!fs::is_regular_file(root / "CMakeLists.txt") || !fs::is_directory(root / "src"))
    fail(ErrorKind::io, root.string(), ": not a pgolf source tree (code accounting needs CMakeLists.txt and src/); "
                                       "pass --source-dir or set export.count_code=false");
  std::vector<std::byte> tar;
  for (const auto& rel : evaluator_sources(root)) tar_member(tar, "pgolf/" + rel, read_file(root / rel));
  tar.resize(tar.size() + 2 * kBlock, std::byte{0});  // end-of-archive marker
  return xz_compress(tar, 9, true);
}

std::vector<BundleMember> read_code_bundle(std::span<const std::byte> bundle, const std::string& origin) {
  const std::vector<std::byte> tar = xz_decompress(bundle, std::uint64_t{1} << 28, origin + ": the code bundle");
  std::vector<BundleMember> members;
  std::size_t at = 0;
  while (at + kBlock <= tar.size()) {
    const char* h = reinterpret_cast<const char*>(tar.data() + at);
    if (h[0] == '\0') break;
    std::string name(h, strnlen(h, 100));
    const std::string prefix(h + 345, strnlen(h + 345, 155));
    if (!prefix.empty()) name = prefix + "/" + name;
    char* end = nullptr;
    const std::string size_field(h + 124, strnlen(h + 124, 12));
    const std::uint64_t size = std::strtoull(size_field.c_str(), &end, 8);
    if (size_field.empty() || end == size_field.c_str() || at + kBlock + size > tar.size())
      fail(ErrorKind::format, origin, ": code bundle member \"", name, "\" has a bad size");
    const fs::path rel(name);
    if (name.empty() || rel.is_absolute() || name.find("..") != std::string::npos)
      fail(ErrorKind::format, origin, ": code bundle member \"", name, "\" is not a plain relative path");
    members.push_back({name, std::string(h + kBlock, size)});
    at += kBlock + (size + kBlock - 1) / kBlock * kBlock;
  }
  return members;
}

fs::path default_source_dir() {
  const char* other = std::getenv("PGOLF_SOURCE_DIR");
  return other != nullptr && *other != '\0' ? fs::path(other) : fs::path(PGOLF_SOURCE_DIR);
}

}  // namespace pgolf::exporter

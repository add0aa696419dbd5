#pragma once
// SHA-256 (FIPS 180-4), for content hashes that tie files together (the tokenizer a set of
// shards was made with). Not used for anything secret.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/files.hpp"

namespace pgolf {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::byte> data);
  std::array<std::uint8_t, 32> finish();  // the object is spent afterwards

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes so far
};

// Lower-case hex of the SHA-256 of `data`, or of a whole file (Error(io) naming it).
std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_file_hex(const fs::path& path);

}  // namespace pgolf

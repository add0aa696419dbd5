#pragma once
// Token shards in the challenge's format (SPEC 2.1): a 256 x int32 little-endian header
// {20240520, 1, n, 0...} followed by n uint16 token ids; file size exactly 1024 + 2n.
// Every malformation is an Error(data) naming the file.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/files.hpp"

namespace pgolf::data {

inline constexpr std::int32_t kShardMagic = 20240520;
inline constexpr std::int32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderInts = 256;
inline constexpr std::size_t kShardHeaderBytes = kShardHeaderInts * 4;

// Validates a complete shard image and returns its tokens (a view into `bytes`).
// `origin` (usually the file name) starts every error message.
std::span<const std::uint16_t> parse_shard(std::span<const std::byte> bytes, const std::string& origin);

// Fails naming `origin`, the position and the id of the first token >= vocab_size.
void check_token_ids(std::span<const std::uint16_t> tokens, std::int64_t vocab_size, const std::string& origin);

// A memory-mapped, validated shard file.
class Shard {
 public:
  explicit Shard(const fs::path& path);
  std::span<const std::uint16_t> tokens() const { return tokens_; }
  const fs::path& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::span<const std::uint16_t> tokens_;
};

// The concatenation, in sorted order, of the shards matching a glob (a "split").
class ShardSet {
 public:
  // `split_name` ("val", "train") appears in errors. vocab_size > 0 checks every token id.
  ShardSet(const std::string& glob, const std::string& split_name, std::int64_t vocab_size);
  const std::vector<Shard>& shards() const { return shards_; }
  std::int64_t total_tokens() const { return total_tokens_; }
  const std::string& glob() const { return glob_; }
  // The first min(max_tokens, total) tokens (max_tokens <= 0: all), copied contiguously.
  std::vector<std::uint16_t> read_prefix(std::int64_t max_tokens) const;

 private:
  std::string glob_;
  std::vector<Shard> shards_;
  std::int64_t total_tokens_ = 0;
};

// The serialized form of a shard (header + body).
std::vector<std::byte> encode_shard(std::span<const std::uint16_t> tokens);
// Writes a shard atomically (temporary file + rename).
void write_shard(const fs::path& path, std::span<const std::uint16_t> tokens);

}  // namespace pgolf::data

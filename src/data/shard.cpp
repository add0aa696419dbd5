#include "data/shard.hpp"

#include <bit>
#include <cstring>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace pgolf::data {

static_assert(std::endian::native == std::endian::little, "pgolf reads little-endian shards in place");

std::span<const std::uint16_t> parse_shard(std::span<const std::byte> bytes, const std::string& origin) {
  if (bytes.size() < kShardHeaderBytes)
    fail(ErrorKind::data, origin, ": not a token shard: ", bytes.size(), " bytes is smaller than the ",
         kShardHeaderBytes, "-byte header");
  std::int32_t header[kShardHeaderInts];
  std::memcpy(header, bytes.data(), kShardHeaderBytes);
  if (header[0] != kShardMagic)
    fail(ErrorKind::data, origin, ": not a token shard: header magic is ", header[0], ", expected ", kShardMagic);
  if (header[1] != kShardVersion)
    fail(ErrorKind::data, origin, ": unsupported shard version ", header[1], ", expected ", kShardVersion);
  if (header[2] < 0) fail(ErrorKind::data, origin, ": header token count is negative (", header[2], ")");
  for (std::size_t i = 3; i < kShardHeaderInts; ++i)
    if (header[i] != 0)
      fail(ErrorKind::data, origin, ": header word ", i, " is ", header[i], ", expected 0 (reserved)");
  const auto n = static_cast<std::uint64_t>(header[2]);
  const std::uint64_t expected = kShardHeaderBytes + 2 * n;
  if (bytes.size() != expected)
    fail(ErrorKind::data, origin, ": file is ", bytes.size(), " bytes but the header says ", n,
         " tokens, which needs exactly ", expected, " bytes (",
         bytes.size() < expected ? "truncated" : "trailing bytes", ")");
  const std::byte* body = bytes.data() + kShardHeaderBytes;
  if (reinterpret_cast<std::uintptr_t>(body) % alignof(std::uint16_t) != 0)
    fail(ErrorKind::internal, origin, ": shard body is not 2-byte aligned in memory");
  return {reinterpret_cast<const std::uint16_t*>(body), static_cast<std::size_t>(n)};
}

void check_token_ids(std::span<const std::uint16_t> tokens, std::int64_t vocab_size, const std::string& origin) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= vocab_size)
      fail(ErrorKind::data, origin, ": token id ", tokens[i], " at position ", i, " is >= the vocab size ", vocab_size);
}

Shard::Shard(const fs::path& path) : file_(path) { tokens_ = parse_shard(file_.bytes(), path.string()); }

ShardSet::ShardSet(const std::string& glob, const std::string& split_name, std::int64_t vocab_size) : glob_(glob) {
  std::vector<fs::path> files = glob_sorted(glob);
  if (files.empty()) fail(ErrorKind::data, glob, ": no ", split_name, " shards match this pattern");
  shards_.reserve(files.size());
  for (const auto& f : files) {
    shards_.emplace_back(f);
    if (vocab_size > 0) check_token_ids(shards_.back().tokens(), vocab_size, f.string());
    total_tokens_ += static_cast<std::int64_t>(shards_.back().tokens().size());
  }
  if (total_tokens_ == 0)
    fail(ErrorKind::data, glob, ": the ", split_name, " split is empty (", files.size(), " shard(s), 0 tokens)");
}

std::vector<std::uint16_t> ShardSet::read_prefix(std::int64_t max_tokens) const {
  std::int64_t want = max_tokens <= 0 ? total_tokens_ : std::min(max_tokens, total_tokens_);
  std::vector<std::uint16_t> out;
  out.reserve(static_cast<std::size_t>(want));
  for (const auto& s : shards_) {
    if (static_cast<std::int64_t>(out.size()) >= want) break;
    auto t = s.tokens();
    std::size_t take = std::min<std::size_t>(t.size(), static_cast<std::size_t>(want) - out.size());
    out.insert(out.end(), t.begin(), t.begin() + static_cast<std::ptrdiff_t>(take));
  }
  return out;
}

std::vector<std::byte> encode_shard(std::span<const std::uint16_t> tokens) {
  if (tokens.size() > static_cast<std::size_t>(INT32_MAX))
    fail(ErrorKind::data, "shard of ", tokens.size(), " tokens exceeds the format's int32 count");
  std::int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<std::int32_t>(tokens.size());
  std::vector<std::byte> out(kShardHeaderBytes + 2 * tokens.size());
  std::memcpy(out.data(), header, kShardHeaderBytes);
  if (!tokens.empty()) std::memcpy(out.data() + kShardHeaderBytes, tokens.data(), 2 * tokens.size());
  return out;
}

void write_shard(const fs::path& path, std::span<const std::uint16_t> tokens) {
  write_file_atomic(path, encode_shard(tokens));
}

}  // namespace pgolf::data

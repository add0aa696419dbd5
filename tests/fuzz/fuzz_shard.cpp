// libFuzzer target: arbitrary bytes as a token shard. pgolf::Error is the expected way to
// reject input; anything else (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.hpp"
#include "data/shard.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto bytes = std::as_bytes(std::span(data, size));
    auto tokens = pgolf::data::parse_shard(bytes, "fuzz");
    pgolf::data::check_token_ids(tokens, 1024, "fuzz");
  } catch (const pgolf::Error&) {
  }
  return 0;
}

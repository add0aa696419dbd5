// libFuzzer target: arbitrary bytes as a config file (no "extends": the fuzzer must not read
// files). pgolf::Error is the expected rejection; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.hpp"
#include "config/config_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    pgolf::config::Config c = pgolf::config::parse_config_text(text, "fuzz.json");
    // A config that parses must also print and parse back to the same thing.
    std::string printed = pgolf::config::to_json(c).dump();
    pgolf::config::Config again = pgolf::config::parse_config_text(printed, "fuzz-roundtrip.json");
    if (pgolf::config::to_json(again).dump() != printed) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  return 0;
}

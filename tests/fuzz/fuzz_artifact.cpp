// libFuzzer target: arbitrary bytes as a pgolf artifact (header, compressed model container,
// code bundle) and as a bare model container. pgolf::Error is the expected rejection;
// anything else is a bug. The checksums would stop almost every mutation at the door, so
// each input is also tried with its checksums recomputed, which lets the fuzzer reach the
// decompressors and the container parser behind them.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/error.hpp"
#include "export/artifact.hpp"

namespace {

using namespace pgolf::exporter;

void check_artifact(std::span<const std::byte> bytes) {
  try {
    const Artifact a = read_artifact(bytes, "fuzz.pgolf");
    for (const auto& t : a.container.tensors)
      if (static_cast<std::int64_t>(dequantize(t).size()) != t.numel()) __builtin_trap();
    const auto again = encode_container(a.container.tensors, a.container.metadata);
    if (decode_container(again, "fuzz-roundtrip").tensors.size() != a.container.tensors.size()) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = std::as_bytes(std::span(data, size));
  check_artifact(input);
  // The artifact's CRC-32 (bytes 40..44) covers bytes [0, 40) and [48, end).
  if (size >= 48) {
    std::vector<std::byte> fixed(input.begin(), input.end());
    const std::uint32_t crc = crc32(std::span(fixed).subspan(48), crc32(std::span(fixed).first(40)));
    std::memcpy(fixed.data() + 40, &crc, 4);
    check_artifact(fixed);
  }
  // A bare container whose trailing CRC-32 covers everything before it.
  if (size >= 4) {
    std::vector<std::byte> fixed(input.begin(), input.end());
    const std::uint32_t crc = crc32(std::span(fixed).first(size - 4));
    std::memcpy(fixed.data() + size - 4, &crc, 4);
    try {
      const Container c = decode_container(fixed, "fuzz.container");
      for (const auto& t : c.tensors) (void)dequantize(t);
    } catch (const pgolf::Error&) {
    }
  }
  return 0;
}

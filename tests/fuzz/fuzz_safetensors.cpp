// libFuzzer target: arbitrary bytes as a safetensors file. pgolf::Error is the expected
// rejection; anything else is a bug. Accepted files are converted and re-serialised.
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace pgolf::io;
  try {
    auto file = SafetensorsFile::parse(std::as_bytes(std::span(data, size)), "fuzz.safetensors");
    SafetensorsWriter writer;
    for (const auto& t : file.tensors()) {
      if (is_floating(t.dtype)) (void)file.to_float32(t);
      writer.add(t.name, t.dtype, t.shape, t.data);
    }
    auto bytes = writer.serialize();
    auto again = SafetensorsFile::parse(bytes, "fuzz-roundtrip");
    if (again.tensors().size() != file.tensors().size()) __builtin_trap();
  } catch (const pgolf::Error&) {
  }
  return 0;
}

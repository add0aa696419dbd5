#pragma once
// The artifact of SPEC 5.3: a versioned model container (magic, version, JSON tensor table
// with names / shapes / schemes, the data, a CRC-32), compressed with xz/lzma or byte-shuffle
// + brotli, followed by the compressed source bundle counted against the 16,000,000-byte
// budget. Loading restores exactly the dequantised weights q * s, or fails with
// Error(format) naming the file and what is wrong.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "common/json.hpp"
#include "config/config.hpp"
#include "export/quantize.hpp"

namespace pgolf::exporter {

inline constexpr std::int64_t kChallengeBudget = 16'000'000;

// The uncompressed container. `q_offsets` (optional) receives, per tensor, the byte offset of
// its quantised values in the result (SIZE_MAX for tensors without any), so a caller can
// change values in place and then reseal_container().
std::vector<std::byte> encode_container(const std::vector<QuantizedTensor>& tensors, const json& metadata,
                                        std::vector<std::size_t>* q_offsets = nullptr);
// Recomputes the container's trailing CRC-32 after its bytes were edited.
void reseal_container(std::vector<std::byte>& container);
struct Container {
  std::vector<QuantizedTensor> tensors;
  json metadata;
};
Container decode_container(std::span<const std::byte> bytes, const std::string& origin);

std::uint32_t crc32(std::span<const std::byte> bytes, std::uint32_t seed = 0);

// xz at `preset` (with LZMA_PRESET_EXTREME when `extreme`), the dictionary no larger than the
// input needs: the same compression, and a reader need not allocate the preset's full
// dictionary (64 MiB at -9) to unpack a small input.
std::vector<std::byte> xz_compress(std::span<const std::byte> raw, int preset, bool extreme);

// Compression of the container (the byte shuffle transposes bytes with the given stride).
std::vector<std::byte> compress(std::span<const std::byte> raw, const config::ExportConfig& e);
// Unpacks an xz stream of at most max_out bytes; Error(format) starting with `what` otherwise.
std::vector<std::byte> xz_decompress(std::span<const std::byte> packed, std::uint64_t max_out, const std::string& what);
std::vector<std::byte> decompress(std::span<const std::byte> packed, std::uint8_t compressor, std::uint8_t shuffle,
                                  std::uint64_t raw_size, const std::string& origin);
std::vector<std::byte> byte_shuffle(std::span<const std::byte> in, int stride);
std::vector<std::byte> byte_unshuffle(std::span<const std::byte> in, int stride);

struct ArtifactSizes {
  std::uint64_t container_raw = 0;  // the model container before compression
  std::uint64_t model = 0;          // compressed model blob
  std::uint64_t code = 0;           // compressed source bundle
  std::uint64_t header = 0;         // the artifact's own framing
  std::uint64_t total() const { return model + code + header; }
};

// The on-disk artifact: header, compressed container, compressed code bundle.
std::vector<std::byte> encode_artifact(std::span<const std::byte> model_blob, const config::ExportConfig& e,
                                       std::uint64_t container_raw_size, std::span<const std::byte> code_bundle,
                                       ArtifactSizes* sizes);

struct Artifact {
  Container container;
  ArtifactSizes sizes;
  std::string compressor;  // "lzma" or "brotli"
  int shuffle_stride = 0;
  std::vector<std::byte> code_bundle;  // tar.xz of the sources
};
Artifact read_artifact(std::span<const std::byte> bytes, const std::string& origin);
Artifact read_artifact_file(const fs::path& path);

}  // namespace pgolf::exporter

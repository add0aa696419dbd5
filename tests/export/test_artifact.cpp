// The artifact (SPEC 5.3): container and compression round trips, exact reload of q * s,
// rejection of every truncation and bit flip, and the reproducible code bundle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "export/artifact.hpp"
#include "export/code_bundle.hpp"
#include "export/quantize.hpp"
#include "io/safetensors.hpp"
#include "support/test_support.hpp"

namespace pgolf::exporter {
namespace {

std::vector<float> gaussian(std::size_t n, std::uint64_t seed, double std) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(std * rng.normal());
  return v;
}

// One tensor of every scheme.
std::vector<QuantizedTensor> sample_tensors() {
  std::vector<QuantizedTensor> t;
  t.push_back(quantize_int6_lite("blocks.0.mlp.fc.weight", gaussian(24 * 40, 1, 0.02), 24, 40, {0.999, 1.0}));
  t.push_back(quantize_int8("tok_emb.weight", gaussian(32 * 16, 2, 0.5), 32, 16, 0.9999984));
  t.push_back(passthrough("smear.gate", {16}, gaussian(16, 3, 1.0), Scheme::fp16));
  t.push_back(passthrough("blocks.0.attn_scale", {16}, gaussian(16, 4, 1.0), Scheme::fp32));
  t.push_back(passthrough("bigram.scale", {}, gaussian(1, 5, 1.0), Scheme::fp16));
  return t;
}

void expect_same_tensors(const std::vector<QuantizedTensor>& a, const std::vector<QuantizedTensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name);
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].shape, b[i].shape);
    EXPECT_EQ(a[i].scheme, b[i].scheme);
    EXPECT_EQ(a[i].q, b[i].q);
    EXPECT_EQ(a[i].scales, b[i].scales);
    EXPECT_EQ(a[i].values, b[i].values);
    EXPECT_EQ(a[i].clip_percentile, b[i].clip_percentile);
  }
}

TEST(Container, RoundTripsByteIdenticallyAndReloadsExactlyQTimesS) {
  const auto tensors = sample_tensors();
  const json meta = {{"format", "test"}, {"n", 3}};
  const std::vector<std::byte> bytes = encode_container(tensors, meta);
  const Container c = decode_container(bytes, "mem");
  expect_same_tensors(tensors, c.tensors);
  EXPECT_EQ(c.metadata, meta);
  EXPECT_EQ(encode_container(c.tensors, c.metadata), bytes);
  for (const auto& t : c.tensors) {
    const std::vector<float> w = dequantize(t);
    ASSERT_EQ(static_cast<std::int64_t>(w.size()), t.numel());
    if (t.quantized())
      for (std::int64_t r = 0; r < t.rows(); ++r)
        for (std::int64_t k = 0; k < t.cols(); ++k) {
          const auto i = static_cast<std::size_t>(r * t.cols() + k);
          ASSERT_EQ(w[i], static_cast<float>(t.q[i]) * io::half_to_float(t.scales[static_cast<std::size_t>(r)]));
        }
  }
}

TEST(Container, RejectsValuesOutsideTheSchemeRange) {
  auto tensors = sample_tensors();
  tensors[0].q[5] = 32;  // int6 holds [-31, 31]
  const auto bytes = encode_container(tensors, json::object());
  try {
    decode_container(bytes, "bad.pgolf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format);
    EXPECT_NE(std::string(e.what()).find("outside [-31, 31]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.pgolf"), std::string::npos) << e.what();
  }
}

TEST(Compression, ShuffleAndBothCompressorsRoundTrip) {
  std::vector<std::byte> raw(10007);
  Rng rng(7);
  for (auto& b : raw) b = static_cast<std::byte>(rng.next_u64() % 17);
  for (int stride : {2, 3, 16}) EXPECT_EQ(byte_unshuffle(byte_shuffle(raw, stride), stride), raw) << stride;
  config::ExportConfig e;
  for (auto comp : {config::Compressor::lzma, config::Compressor::brotli})
    for (int stride : {0, 2}) {
      e.compressor = comp;
      e.byte_shuffle_stride = stride;
      e.brotli_quality = 5;  // the round trip does not depend on the quality
      const auto packed = compress(raw, e);
      EXPECT_LT(packed.size(), raw.size());
      EXPECT_EQ(decompress(packed, comp == config::Compressor::lzma ? 1 : 2, static_cast<std::uint8_t>(stride), raw.size(), "m"), raw);
    }
}

std::vector<std::byte> sample_artifact(config::Compressor comp, std::vector<std::byte> code = {}) {
  config::ExportConfig e;
  e.compressor = comp;
  e.byte_shuffle_stride = comp == config::Compressor::brotli ? 2 : 0;
  const auto raw = encode_container(sample_tensors(), {{"format", "test"}});
  return encode_artifact(compress(raw, e), e, raw.size(), code, nullptr);
}

std::vector<std::byte> small_code_bundle() {
  // A bundle of this repository's CMakeLists.txt and a source file, to keep the test fast.
  test::TempDir dir;
  fs::create_directories(dir / "src");
  fs::copy_file(test::source_dir() / "CMakeLists.txt", dir / "CMakeLists.txt");
  fs::copy_file(test::source_dir() / "src/export/artifact.hpp", dir / "src/artifact.hpp");
  return make_code_bundle(dir.path());
}

TEST(Artifact, ReadsBackWhatWasWritten) {
  const auto code = small_code_bundle();
  for (auto comp : {config::Compressor::lzma, config::Compressor::brotli}) {
    const auto bytes = sample_artifact(comp, code);
    const Artifact a = read_artifact(bytes, "a.pgolf");
    expect_same_tensors(sample_tensors(), a.container.tensors);
    EXPECT_EQ(a.sizes.total(), bytes.size());
    EXPECT_EQ(a.code_bundle, code);
    EXPECT_EQ(a.compressor, comp == config::Compressor::lzma ? "lzma" : "brotli");
  }
}

void expect_format_error(std::span<const std::byte> bytes, const std::string& what) {
  try {
    (void)read_artifact(bytes, "damaged.pgolf");
    ADD_FAILURE() << what << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find("damaged.pgolf"), std::string::npos) << what << ": " << e.what();
  }
}

TEST(Artifact, EveryTruncationIsAClearError) {
  for (auto comp : {config::Compressor::lzma, config::Compressor::brotli}) {
    const auto bytes = sample_artifact(comp, small_code_bundle());
    for (std::size_t len = 0; len < bytes.size(); len += (len < 64 ? 1 : 97))
      expect_format_error(std::span(bytes).first(len), "truncated to " + std::to_string(len));
    expect_format_error(std::span(bytes).first(bytes.size() - 1), "one byte short");
    auto longer = bytes;
    longer.push_back(std::byte{0});
    expect_format_error(longer, "one byte of padding");
  }
}

TEST(Artifact, EveryBitFlipIsDetected) {
  for (auto comp : {config::Compressor::lzma, config::Compressor::brotli}) {
    const auto bytes = sample_artifact(comp, small_code_bundle());
    for (std::size_t at = 0; at < bytes.size(); at += (at < 64 ? 1 : 13))
      for (int bit : {0, 3, 7}) {
        auto damaged = bytes;
        damaged[at] ^= static_cast<std::byte>(1 << bit);
        expect_format_error(damaged, "bit " + std::to_string(bit) + " of byte " + std::to_string(at));
        if (comp != config::Compressor::lzma || (at >= 40 && at < 44)) continue;
        // Behind the artifact's CRC, xz's own checks and the container's CRC catch the same flip
        // (brotli has no checksum: harmless flips such as its window size can decode unchanged).
        const std::uint32_t crc = crc32(std::span(damaged).subspan(48), crc32(std::span(damaged).first(40)));
        std::memcpy(damaged.data() + 40, &crc, 4);
        expect_format_error(damaged, "bit " + std::to_string(bit) + " of byte " + std::to_string(at) + " behind a valid CRC");
      }
  }
}

TEST(CodeBundle, IsTheSameBytesForTheSameSourcesAnywhere) {
  const fs::path root = test::source_dir();
  const auto files = evaluator_sources(root);
  ASSERT_FALSE(files.empty());
  EXPECT_TRUE(std::is_sorted(files.begin(), files.end()));
  EXPECT_NE(std::find(files.begin(), files.end(), "CMakeLists.txt"), files.end());
  EXPECT_NE(std::find(files.begin(), files.end(), "src/export/code_bundle.cpp"), files.end());
  for (const auto& f : files) EXPECT_FALSE(f.starts_with("tests/") || f.starts_with("data/")) << f;

  const auto bundle = make_code_bundle(root);
  EXPECT_EQ(make_code_bundle(root), bundle);
  // A copy elsewhere, with other timestamps and permissions, bundles to the same bytes.
  test::TempDir copy;
  for (const auto& f : files) {
    fs::create_directories((copy / f).parent_path());
    fs::copy_file(root / f, copy / f);
    fs::permissions(copy / f, fs::perms::owner_all);
  }
  fs::create_directories(copy / "src/empty_dir");
  EXPECT_EQ(make_code_bundle(copy.path()), bundle);

  const auto members = read_code_bundle(bundle, "bundle");
  ASSERT_EQ(members.size(), files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(members[i].path, "pgolf/" + files[i]);
    EXPECT_EQ(members[i].contents, read_file(root / files[i])) << files[i];
  }
  // A changed source changes the bundle.
  write_file_atomic(copy / "src/export/pack.cpp", read_file(root / "src/export/pack.cpp") + "\n");
  EXPECT_NE(make_code_bundle(copy.path()), bundle);
}

TEST(CodeBundle, ADirectoryThatIsNotASourceTreeIsAClearError) {
  test::TempDir dir;
  try {
    make_code_bundle(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("export.count_code"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pgolf::exporter

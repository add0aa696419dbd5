#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "common/error.hpp"
#include "io/safetensors.hpp"
#include "support/test_support.hpp"

namespace pgolf::io {
namespace {

std::span<const std::byte> as_span(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// A file image from raw header text and data bytes, bypassing the writer's checks.
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  SafetensorsWriter w;
  std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 1e-30f, 7.0f};
  w.add_f32("blocks.0.attn.c_q.weight", {2, 3}, a);
  std::vector<std::int32_t> b = {7, -8};
  w.add("counts", DType::I32, {2}, std::as_bytes(std::span(b)));
  std::vector<std::uint16_t> h = {float_to_half(0.5f)};
  w.add("scale", DType::F16, {}, std::as_bytes(std::span(h)));
  w.add("empty", DType::F32, {0, 4}, {});
  w.set_metadata("format", "pt");
  auto bytes = w.serialize();

  std::uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "the data section must stay 8-byte aligned";

  auto f = SafetensorsFile::parse(bytes, "mem");
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const TensorView& q = f.at("blocks.0.attn.c_q.weight");
  EXPECT_EQ(q.dtype, DType::F32);
  EXPECT_EQ(q.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.to_float32(q), a);
  EXPECT_EQ(f.at("counts").numel(), 2);
  EXPECT_EQ(f.to_float32(f.at("scale")), std::vector<float>{0.5f});
  EXPECT_EQ(f.at("empty").numel(), 0);
  EXPECT_EQ(f.find("missing"), nullptr);
  try {
    f.at("missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format);
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
  EXPECT_THROW(f.to_float32(f.at("counts")), Error) << "integer tensors are not silently converted";
}

TEST(Safetensors, FileRoundTripIsByteIdentical) {
  test::TempDir dir;
  SafetensorsWriter w;
  std::vector<float> v(100);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.25f;
  w.add_f32("tok_emb.weight", {10, 10}, v);
  w.write(dir / "a.safetensors");
  auto f = SafetensorsFile::open(dir / "a.safetensors");
  SafetensorsWriter again;
  for (const auto& t : f.tensors()) again.add(t.name, t.dtype, t.shape, t.data);
  again.write(dir / "b.safetensors");
  EXPECT_EQ(test::read_bytes(dir / "a.safetensors"), test::read_bytes(dir / "b.safetensors"));
}

TEST(Safetensors, WriterRejectsInconsistentTensors) {
  SafetensorsWriter w;
  std::vector<float> v(6);
  EXPECT_THROW(w.add_f32("x", {2, 2}, v), Error);
  w.add_f32("x", {2, 3}, v);
  EXPECT_THROW(w.add_f32("x", {2, 3}, v), Error) << "duplicate names";
  EXPECT_THROW(w.add_f32("__metadata__", {2, 3}, v), Error);
  EXPECT_THROW(w.add("big", DType::F32, {std::int64_t{1} << 62}, {}), Error) << "numel * 4 must not wrap to 0";
}

struct BadFile {
  const char* name;
  std::string bytes;
  const char* fragment;
};

std::vector<BadFile> bad_files() {
  const std::string ok_entry = R"("t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  const std::string data8(8, '\0');
  std::string huge(8, '\0');
  std::uint64_t big = 200'000'000;
  std::memcpy(huge.data(), &big, 8);
  std::string past(8, '\0');
  std::uint64_t forty = 40;
  std::memcpy(past.data(), &forty, 8);
  return {
      {"too small", "abc", "too small"},
      {"header too large", huge, "exceeds the limit"},
      {"header past end", past + "{}", "past the end"},
      {"not json", image("{nope", ""), "invalid JSON"},
      {"not an object", image("[1]", ""), "not a JSON object"},
      {"duplicate tensor", image("{" + ok_entry + ", " + ok_entry + "}", data8), "duplicate key"},
      {"unknown dtype", image(R"({"t": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}})", data8), "unknown dtype"},
      {"negative shape", image(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data8), "non-negative"},
      {"size mismatch", image(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data8), "needs 3 x 4"},
      {"reversed offsets", image(R"({"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", data8), "reversed"},
      {"offset past data", image(R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", data8), "past the data"},
      {"gap", image(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", data8), "gap"},
      {"overlap", image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", data8), "overlap"},
      {"trailing bytes", image("{" + ok_entry + "}", data8 + "xxxx"), "trailing"},
      {"unknown field", image(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", data8), "unknown field"},
      {"bad metadata", image(R"({"__metadata__": {"k": 1}})", ""), "strings"},
      {"missing offsets", image(R"({"t": {"dtype": "F32", "shape": [2]}})", data8), "data_offsets"},
      // 2^62 F32 elements: numel * 4 wraps to 0 in 64 bits (found in review).
      {"size overflow", image(R"({"t": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", ""),
       "needs 4611686018427387904 x 4"},
      {"size overflow 2d", image(R"({"t": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", data8),
       "more than 2^62"},
  };
}

TEST(SafetensorsMalformations, EachIsAFormatErrorNamingTheFile) {
  for (const auto& b : bad_files()) {
    SCOPED_TRACE(b.name);
    try {
      SafetensorsFile::parse(as_span(b.bytes), "ckpt-under-test");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::format) << e.what();
      EXPECT_NE(std::string(e.what()).find("ckpt-under-test"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(b.fragment), std::string::npos) << e.what();
    }
  }
}

TEST(SafetensorsMalformations, TheCliExitsWithTheFormatCodeAndNamesTheFile) {
  test::TempDir dir;
  for (const auto& b : bad_files()) {
    SCOPED_TRACE(b.name);
    const auto file = dir / "model.safetensors";
    test::write_bytes(file, b.bytes);
    auto r = test::run_pgolf({"inspect", "checkpoint", file.string(), "--stats"});
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_NE(r.err.find(file.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(b.fragment), std::string::npos) << r.err;
  }
}

TEST(HalfPrecision, EveryHalfRoundTripsThroughFloat) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << "half 0x" << std::hex << h;
  }
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(half_to_float(0x7c00)));
}

TEST(HalfPrecision, FloatToHalfRoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00) << "a tie rounds to the even mantissa";
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00) << "rounds to infinity";
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000) << "half the smallest subnormal ties to zero";
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Bfloat16, RoundTripsAndRoundsToNearestEven) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    float f = bf16_to_float(static_cast<std::uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), b);
  }
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80) << "tie to even";
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82) << "tie to even (up)";
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
}

}  // namespace
}  // namespace pgolf::io

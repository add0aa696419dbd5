// SHA-256 against the FIPS 180-4 / NIST example vectors (fed whole and in pieces of every
// awkward size), and the non-finite scans the weight loaders use.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/finite.hpp"
#include "common/sha256.hpp"

namespace pgolf {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(Sha256, MatchesTheStandardsVectors) {
  EXPECT_EQ(sha256_hex(bytes_of("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(bytes_of("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(bytes_of(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PiecesHashLikeTheWhole) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + (i * 7) % 26);
  const std::string whole = sha256_hex(bytes_of(text));
  for (std::size_t piece : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 127u, 999u}) {
    Sha256 s;
    for (std::size_t at = 0; at < text.size(); at += piece) s.update(bytes_of(text.substr(at, piece)));
    std::string hex;
    for (std::uint8_t b : s.finish()) {
      static const char d[] = "0123456789abcdef";
      hex += d[b >> 4];
      hex += d[b & 15];
    }
    EXPECT_EQ(hex, whole) << "pieces of " << piece;
  }
}

TEST(FiniteScan, FindsTheFirstNonFiniteValueAndCountsThemAll) {
  std::vector<float> v(100, 1.0f);
  EXPECT_FALSE(find_non_finite(v).has_value());
  v[41] = std::numeric_limits<float>::infinity();
  v[7] = std::numeric_limits<float>::quiet_NaN();
  v[99] = -std::numeric_limits<float>::infinity();
  const auto f = find_non_finite(v);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->index, 7u);
  EXPECT_TRUE(std::isnan(f->value));
  EXPECT_EQ(f->count, 3u);
  EXPECT_EQ(describe(*f), "NaN at index 7 (3 of 100 values are not finite)");
  std::vector<double> d(5, 0.0);
  d[4] = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(describe(*find_non_finite(d)), "-Inf at index 4 (1 of 5 values is not finite)");
}

TEST(FiniteScan, Float16PatternsWithAllOnesExponentsAreNotFinite) {
  // 0x7bff is the largest finite half (65504), 0x7c00 +Inf, 0xfc00 -Inf, 0x7e00 a NaN.
  std::vector<std::uint16_t> h = {0x3c00, 0x7bff, 0xfbff, 0x0001};
  EXPECT_FALSE(find_non_finite_half(h).has_value());
  for (std::uint16_t bad : {std::uint16_t{0x7c00}, std::uint16_t{0xfc00}, std::uint16_t{0x7e00}, std::uint16_t{0xffff}}) {
    h[2] = bad;
    const auto f = find_non_finite_half(h);
    ASSERT_TRUE(f.has_value()) << bad;
    EXPECT_EQ(f->index, 2u);
  }
  h[2] = 0xfc00;
  EXPECT_EQ(find_non_finite_half(h)->value, -std::numeric_limits<double>::infinity());
}

}  // namespace
}  // namespace pgolf

#include <gtest/gtest.h>

#include "common/strings.hpp"

namespace pgolf {
namespace {

TEST(Strings, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("num_layrs", "num_layers"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(Strings, ClosestMatchSuggestsOnlyPlausibleTypos) {
  std::vector<std::string> keys = {"num_layers", "num_heads", "model_dim"};
  EXPECT_EQ(closest_match("num_layrs", keys), "num_layers");
  EXPECT_EQ(closest_match("nm_heads", keys), "num_heads");
  EXPECT_EQ(closest_match("completely_different", keys), "");
}

TEST(Strings, Formatting) {
  EXPECT_EQ(with_commas(0), "0");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(1000), "1,000");
  EXPECT_EQ(with_commas(62021632), "62,021,632");
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(fixed(1.23456, 2), "1.23");
  EXPECT_EQ(trim("  a b \n"), "a b");
  EXPECT_EQ(split("a.b..c", '.'), (std::vector<std::string>{"a", "b", "", "c"}));
}

}  // namespace
}  // namespace pgolf

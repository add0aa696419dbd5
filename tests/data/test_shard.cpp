#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <numeric>

#include "common/error.hpp"
#include "data/shard.hpp"
#include "support/test_support.hpp"

namespace pgolf::data {
namespace {

using test::TempDir;

std::string shard_bytes(const std::vector<std::uint16_t>& tokens) {
  auto b = encode_shard(tokens);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

void set_header_word(std::string& bytes, std::size_t index, std::int32_t value) {
  std::memcpy(bytes.data() + 4 * index, &value, 4);
}

TEST(Shard, EncodeThenParseRoundTrips) {
  std::vector<std::uint16_t> tokens = {1, 5, 1023, 0, 65535, 1, 7};
  auto bytes = encode_shard(tokens);
  ASSERT_EQ(bytes.size(), 1024 + 2 * tokens.size());
  std::int32_t header[3];
  std::memcpy(header, bytes.data(), 12);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 7);
  auto parsed = parse_shard(bytes, "mem");
  EXPECT_EQ(std::vector<std::uint16_t>(parsed.begin(), parsed.end()), tokens);
}

TEST(Shard, WriteThenOpenRoundTripsThroughAFile) {
  TempDir dir;
  std::vector<std::uint16_t> tokens(1000);
  std::iota(tokens.begin(), tokens.end(), 0);
  write_shard(dir / "s.bin", tokens);
  Shard s(dir / "s.bin");
  EXPECT_EQ(std::vector<std::uint16_t>(s.tokens().begin(), s.tokens().end()), tokens);
}

TEST(Shard, TheBundledShardsAreValid) {
  Shard val(test::bundled("fineweb_mini_sp1024/fineweb_val_000000.bin"));
  EXPECT_EQ(val.tokens().size(), 1040298u);
  EXPECT_EQ(val.tokens()[0], 1) << "the val stream starts with BOS";
  check_token_ids(val.tokens(), 1024, "val");
  Shard train(test::bundled("fineweb_mini_sp1024/fineweb_train_000000.bin"));
  EXPECT_EQ(train.tokens().size(), 628457u);
  check_token_ids(train.tokens(), 1024, "train");
}

// Each malformation of SPEC 2.1, as a mutation of a valid shard image, with the words the
// message must contain.
struct Malformation {
  const char* name;
  std::function<void(std::string&)> mutate;
  const char* fragment;
};

const std::vector<Malformation>& malformations() {
  static const std::vector<Malformation> all = {
      {"wrong magic", [](std::string& b) { set_header_word(b, 0, 20240521); }, "magic"},
      {"wrong version", [](std::string& b) { set_header_word(b, 1, 2); }, "version"},
      {"negative count", [](std::string& b) { set_header_word(b, 2, -1); }, "negative"},
      {"reserved word set", [](std::string& b) { set_header_word(b, 200, 7); }, "header word 200"},
      {"truncated body", [](std::string& b) { b.resize(b.size() - 2); }, "truncated"},
      {"trailing bytes", [](std::string& b) { b += "xy"; }, "trailing"},
      {"count too large", [](std::string& b) { set_header_word(b, 2, 11); }, "truncated"},
      {"smaller than header", [](std::string& b) { b.resize(100); }, "smaller than"},
      {"empty file", [](std::string& b) { b.clear(); }, "smaller than"},
      {"token id >= vocab", [](std::string& b) { b[1024 + 2 * 3] = '\x00'; b[1024 + 2 * 3 + 1] = '\x04'; }, ">= the vocab size"},
  };
  return all;
}

TEST(ShardMalformations, EachIsADataErrorNamingTheOrigin) {
  for (const auto& m : malformations()) {
    SCOPED_TRACE(m.name);
    std::string bytes = shard_bytes({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    m.mutate(bytes);
    try {
      auto tokens = parse_shard(std::as_bytes(std::span(bytes.data(), bytes.size())), "shard-under-test");
      check_token_ids(tokens, 1024, "shard-under-test");
      ADD_FAILURE() << "accepted a malformed shard";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::data);
      EXPECT_NE(std::string(e.what()).find("shard-under-test"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(m.fragment), std::string::npos) << e.what();
    }
  }
}

TEST(ShardMalformations, TheCliExitsWithTheDataCodeAndNamesTheFile) {
  TempDir dir;
  for (const auto& m : malformations()) {
    SCOPED_TRACE(m.name);
    std::string bytes = shard_bytes({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    m.mutate(bytes);
    const auto file = dir / "fineweb_val_000000.bin";
    test::write_bytes(file, bytes);
    auto r = test::run_pgolf({"inspect", "shard", file.string(), "--vocab", "1024"});
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_NE(r.err.find(file.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(m.fragment), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("data error"), std::string::npos) << r.err;
  }
}

TEST(ShardCli, LiteralNamesGlobsAndMissingFiles) {
  TempDir dir;
  write_shard(dir / "odd[1].bin", std::vector<std::uint16_t>{1, 2, 3});
  auto r = test::run_pgolf({"inspect", "shard", (dir / "odd[1].bin").string()});
  EXPECT_EQ(r.exit_code, 0) << "a literal name with glob characters: " << r.err;
  r = test::run_pgolf({"inspect", "shard", (dir / "missing.bin").string()});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("missing.bin"), std::string::npos) << r.err;
  r = test::run_pgolf({"inspect", "shard", (dir / "nothing_*.bin").string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("nothing_*.bin"), std::string::npos) << r.err;
  r = test::run_pgolf({"inspect", "shard", (dir / "odd[1].bin").string(), "--preview", "10"});
  EXPECT_EQ(r.exit_code, 2) << "--preview needs --tokenizer: " << r.err;
}

TEST(ShardSet, ConcatenatesMatchesInSortedOrder) {
  TempDir dir;
  write_shard(dir / "fineweb_val_000001.bin", std::vector<std::uint16_t>{4, 5});
  write_shard(dir / "fineweb_val_000000.bin", std::vector<std::uint16_t>{1, 2, 3});
  ShardSet set((dir / "fineweb_val_*.bin").string(), "val", 1024);
  EXPECT_EQ(set.total_tokens(), 5);
  EXPECT_EQ(set.read_prefix(0), (std::vector<std::uint16_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(set.read_prefix(4), (std::vector<std::uint16_t>{1, 2, 3, 4}));
}

TEST(ShardSet, EmptySplitsAreErrorsNamingTheGlob) {
  TempDir dir;
  const std::string glob = (dir / "fineweb_val_*.bin").string();
  try {
    ShardSet set(glob, "val", 1024);
    ADD_FAILURE() << "no files must be an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find(glob), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("no val shards"), std::string::npos);
  }
  write_shard(dir / "fineweb_val_000000.bin", std::vector<std::uint16_t>{});
  try {
    ShardSet set(glob, "val", 1024);
    ADD_FAILURE() << "a split of zero tokens must be an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(glob), std::string::npos);
  }
}

TEST(ShardSet, ATokenOutOfVocabNamesTheFileAndPosition) {
  TempDir dir;
  write_shard(dir / "fineweb_train_000000.bin", std::vector<std::uint16_t>{1, 2});
  write_shard(dir / "fineweb_train_000001.bin", std::vector<std::uint16_t>{1, 2000, 3});
  try {
    ShardSet set((dir / "fineweb_train_*.bin").string(), "train", 1024);
    ADD_FAILURE();
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("fineweb_train_000001.bin"), std::string::npos) << what;
    EXPECT_NE(what.find("2000"), std::string::npos) << what;
    EXPECT_NE(what.find("position 1"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace pgolf::data

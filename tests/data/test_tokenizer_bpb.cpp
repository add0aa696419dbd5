#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "common/error.hpp"
#include "data/bpb.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"
#include "support/test_support.hpp"

namespace pgolf::data {
namespace {

const Tokenizer& sp1024() {
  static const Tokenizer tok(test::bundled("tokenizers/fineweb_1024_bpe.model"));
  return tok;
}

TEST(Tokenizer, TheBundledModelIsTheOfficialSp1024) {
  const Tokenizer& t = sp1024();
  EXPECT_EQ(t.vocab_size(), 1024);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 3);
  EXPECT_EQ(t.piece(939), "\xE2\x96\x81") << "U+2581 is id 939 (SOURCES.md)";
  for (int id = 4; id < 260; ++id) EXPECT_TRUE(t.is_byte(id)) << id;
  EXPECT_FALSE(t.is_byte(260));
  const ModelSettings& s = t.settings();
  EXPECT_EQ(s.model_type, 2);
  EXPECT_EQ(s.normalizer_name, "nmt_nfkc");
  EXPECT_FALSE(s.add_dummy_prefix);
  EXPECT_TRUE(s.byte_fallback);
  EXPECT_TRUE(s.split_digits);
  EXPECT_EQ(s.trainer_vocab_size, 1024);
  EXPECT_TRUE(convention_deviations(t).empty());
}

TEST(Tokenizer, EncodesTheOfficialValTokens) {
  // The official val stream starts "Insurance Company Declares Living Man Dead".
  Shard val(test::bundled("fineweb_mini_sp1024/fineweb_val_000000.bin"));
  std::vector<int> ids = sp1024().encode("Insurance Company");
  ASSERT_FALSE(ids.empty());
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], val.tokens()[1 + i]) << i;
  EXPECT_EQ(sp1024().decode(val.tokens().subspan(1, ids.size())), "Insurance Company");
}

TEST(Tokenizer, NonModelFilesAreDataErrorsNamingTheFile) {
  test::TempDir dir;
  test::write_bytes(dir / "bad.model", "this is not a protobuf");
  try {
    Tokenizer t(dir / "bad.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos);
  }
  try {
    Tokenizer t(dir / "missing.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find("missing.model"), std::string::npos);
  }
}

TEST(ByteTables, FollowSpec23) {
  const Tokenizer& t = sp1024();
  ByteTables b = build_byte_tables(t, 1024);
  ASSERT_EQ(b.size(), 1024u);
  for (int id : {0, 1, 2, 3}) {  // pad, bos, eos, unk
    EXPECT_EQ(b.boundary[id], 1) << id;
    EXPECT_EQ(b.base_bytes[id], 0) << id;
  }
  for (int id = 4; id < 260; ++id) {
    EXPECT_EQ(b.base_bytes[id], 1) << id;
    EXPECT_EQ(b.boundary[id], 0) << id;
    EXPECT_EQ(b.leading_space[id], 0) << id;
  }
  // Hard-coded rows of the official table (pgolf inspect tokenizer --tables), so that this
  // test does not restate the rule it checks: {id, base bytes, leading space}.
  struct Row {
    int id, base, lead;
  };
  for (const Row& r : {Row{260, 1, 1} /* "▁t" */, Row{267, 3, 1} /* "▁the" */, Row{300, 2, 1} /* "▁th" */,
                       Row{840, 9, 0} /* "formation" */, Row{912, 8, 1} /* "▁business" */,
                       Row{939, 0, 1} /* a lone "▁" */, Row{940, 1, 0} /* "e" */, Row{1023, 1, 0} /* "*" */}) {
    EXPECT_EQ(b.base_bytes[r.id], r.base) << r.id;
    EXPECT_EQ(b.leading_space[r.id], r.lead) << r.id;
    EXPECT_EQ(b.boundary[r.id], 0) << r.id;
  }
  // A leading space counts unless the previous token is a boundary (BOS starts a document).
  EXPECT_EQ(b.target_bytes(5, 939), 1);
  EXPECT_EQ(b.target_bytes(1, 939), 0);
}

TEST(ByteTables, CountingRejectsIdsOutsideTheTablesNamingTheStream) {
  ByteTables b = build_byte_tables(sp1024(), 1024);
  std::vector<std::uint16_t> tokens = {1, 5, 2000};
  try {
    count_target_bytes(tokens, b, "some-shard.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data);
    EXPECT_NE(std::string(e.what()).find("some-shard.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2000"), std::string::npos) << e.what();
  }
}

TEST(ByteTables, LoadingChecksTheModelVocabularyAgainstTheTokenizer) {
  const std::string path = test::bundled("tokenizers/fineweb_1024_bpe.model").string();
  const ByteTables b = load_byte_tables(path, 1024);
  EXPECT_EQ(b.size(), 1024u);
  EXPECT_EQ(b.base_bytes, build_byte_tables(sp1024(), 1024).base_bytes);
  try {
    load_byte_tables(path, 1000);
    FAIL() << "a 1000-id model cannot use a 1024-piece tokenizer";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("model.vocab_size: 1000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fineweb_1024_bpe.model (vocab size 1024)"), std::string::npos) << e.what();
  }
}

TEST(ByteTables, IdsPastTheTokenizerAreZeroByteBoundaries) {
  ByteTables b = build_byte_tables(sp1024(), 1100);
  ASSERT_EQ(b.size(), 1100u);
  EXPECT_EQ(b.boundary[1099], 1);
  EXPECT_EQ(b.base_bytes[1099], 0);
}

// The expected numbers come from tests/reference/count_val_bytes.py, an independent
// implementation on the sentencepiece Python package (run it to regenerate them).
TEST(ByteTables, BundledValByteCountMatchesThePythonReference) {
  Shard val(test::bundled("fineweb_mini_sp1024/fineweb_val_000000.bin"));
  ByteTables b = build_byte_tables(sp1024(), 1024);
  EXPECT_EQ(count_target_bytes(val.tokens(), b, "val"), 2504867);
  const std::size_t seq_len = 2048;
  const std::size_t trimmed = ((val.tokens().size() - 1) / seq_len) * seq_len + 1;
  EXPECT_EQ(trimmed, 1038337u);
  EXPECT_EQ(count_target_bytes(val.tokens().subspan(0, trimmed), b, "val"), 2500116);
}

TEST(BpbSums, ComputesBitsPerByteOverScoredTargets) {
  ByteTables b = build_byte_tables(sp1024(), 1024);
  BpbSums sums;
  sums.add(5, 939, std::log(4.0), b);  // 1 byte, 2 bits
  sums.add(1, 939, std::log(4.0), b);  // 0 bytes (after BOS), 2 bits
  sums.add(5, 100, 0.5, b);            // 1 byte (a byte-fallback piece)
  EXPECT_EQ(sums.scored, 3);
  EXPECT_EQ(sums.bytes, 2);
  EXPECT_NEAR(sums.mean_loss(), (2 * std::log(4.0) + 0.5) / 3, 1e-12);
  EXPECT_NEAR(sums.bpb(), (4.0 + 0.5 / std::numbers::ln2) / 2, 1e-12);
  BpbSums other;
  other.add(5, 100, 1.0, b);
  sums.merge(other);
  EXPECT_EQ(sums.scored, 4);
  EXPECT_EQ(sums.bytes, 3);
  EXPECT_TRUE(std::isnan(BpbSums{}.bpb()));
}

}  // namespace
}  // namespace pgolf::data

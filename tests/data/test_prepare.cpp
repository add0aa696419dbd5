#include <gtest/gtest.h>

#include "common/error.hpp"
#include "common/json.hpp"
#include "data/prepare.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"
#include "support/test_support.hpp"

#include <algorithm>

namespace pgolf::data {
namespace {

using test::TempDir;

const fs::path kSp1024 = test::bundled("tokenizers/fineweb_1024_bpe.model");

std::vector<std::uint16_t> read_all(const std::string& glob) {
  return ShardSet(glob, "test", 0).read_prefix(0);
}

PrepareOptions options(const fs::path& input, const fs::path& out, std::int64_t val_docs) {
  PrepareOptions o;
  o.input = input;
  o.tokenizer = kSp1024;
  o.out_dir = out;
  o.val_docs = val_docs;
  return o;
}

// Acceptance: the decoded text of the first 901 official val documents, tokenized by
// pgolf with the official sp1024 model, gives exactly the official val tokens.
TEST(Prepare, ReproducesTheOfficialValTokens) {
  TempDir dir;
  PrepareResult r = prepare(options(test::bundled("text/fineweb_val_head901.jsonl.xz"), dir.path(), 901));
  EXPECT_EQ(r.val.docs, 901);
  EXPECT_EQ(r.train.docs, 0);
  auto ours = read_all((dir / "fineweb_val_*.bin").string());
  Shard official(test::bundled("fineweb_mini_sp1024/fineweb_val_000000.bin"));
  // The official head holds the 901 documents and the first tokens of document 902.
  ASSERT_EQ(ours.size(), 1040060u);
  ASSERT_LT(ours.size(), official.tokens().size());
  for (std::size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i], official.tokens()[i]) << "first difference at " << i;
  EXPECT_EQ(official.tokens()[ours.size()], 1) << "document 902 starts with BOS right after";
}

TEST(Prepare, ReproducesTheBundledTrainShardFromRawText) {
  TempDir dir;
  prepare(options(test::bundled("text/fineweb_docs200.jsonl.xz"), dir.path(), 0));
  EXPECT_EQ(test::read_bytes(dir / "fineweb_train_000000.bin"),
            test::read_bytes(test::bundled("fineweb_mini_sp1024/fineweb_train_000000.bin")));
  EXPECT_FALSE(fs::exists(dir / "fineweb_val_000000.bin"));
  json manifest = json::parse(test::read_bytes(dir / "manifest.json"));
  EXPECT_EQ(manifest["splits"]["train"]["docs"], 200);
  EXPECT_EQ(manifest["splits"]["train"]["tokens"], 628457);
  EXPECT_EQ(manifest["append_eos"], false);
}

TEST(Prepare, SplitsByDocumentCountAndCutsShardsAcrossDocuments) {
  TempDir whole, cut;
  const fs::path input = test::bundled("text/fineweb_docs200.jsonl.xz");
  prepare(options(input, whole.path(), 0));
  PrepareOptions o = options(input, cut.path(), 50);
  o.shard_tokens = 40000;
  PrepareResult r = prepare(o);
  EXPECT_EQ(r.val.docs, 50);
  EXPECT_EQ(r.train.docs, 150);
  ASSERT_GT(r.val.files.size(), 1u);
  ASSERT_GT(r.train.files.size(), 1u);
  for (const auto& f : r.val.files) EXPECT_LE(Shard(f).tokens().size(), 40000u);
  for (std::size_t i = 0; i + 1 < r.train.files.size(); ++i) EXPECT_EQ(Shard(r.train.files[i]).tokens().size(), 40000u);
  // val + train, concatenated in order, is the unsplit stream: documents cross shard edges.
  auto val = read_all((cut / "fineweb_val_*.bin").string());
  auto train = read_all((cut / "fineweb_train_*.bin").string());
  auto all = read_all((whole / "fineweb_train_*.bin").string());
  std::vector<std::uint16_t> joined = val;
  joined.insert(joined.end(), train.begin(), train.end());
  EXPECT_EQ(joined, all);
  EXPECT_EQ(std::count(val.begin(), val.end(), 1), 50);
  EXPECT_EQ(train.front(), 1) << "the train split starts with a document's BOS";
}

TEST(Prepare, PlainTextDocumentModes) {
  TempDir dir;
  test::write_bytes(dir / "in.txt", "first line\nsecond line\n\nthird paragraph\n");
  const Tokenizer tok(kSp1024);
  auto docs_in = [&](TxtDocuments mode) {
    PrepareOptions o = options(dir / "in.txt", dir / "out", 0);
    o.txt_documents = mode;
    o.force = true;
    return prepare(o).train.docs;
  };
  EXPECT_EQ(docs_in(TxtDocuments::line), 3);
  EXPECT_EQ(docs_in(TxtDocuments::paragraph), 2);
  EXPECT_EQ(docs_in(TxtDocuments::file), 1);
  auto tokens = read_all((dir / "out/fineweb_train_*.bin").string());
  std::vector<int> expected = tok.encode("first line\nsecond line\n\nthird paragraph");
  ASSERT_EQ(tokens.size(), expected.size() + 1);
  EXPECT_EQ(tokens[0], 1);
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(tokens[i + 1], expected[i]);
}

TEST(Prepare, RefusesToOverwriteShardsWithoutForceAndForceReplacesThemAll) {
  TempDir dir;
  const std::string in = test::bundled("text/fineweb_docs200.jsonl.xz").string(), out = (dir / "out").string();
  auto first = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "-o", out, "--val-docs", "0",
                                "--shard-tokens", "100000"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_TRUE(fs::exists(dir / "out/fineweb_train_000006.bin")) << "628,457 tokens make 7 shards of 100,000";
  auto r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "-o", out, "--val-docs", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  // A smaller second run must not leave the first run's higher-numbered shards behind.
  r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "-o", out, "--val-docs", "0", "--force",
                       "--max-docs", "10"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto shards = glob_sorted((dir / "out/fineweb_*.bin").string());
  ASSERT_EQ(shards.size(), 1u);
  Shard only(shards[0]);
  EXPECT_EQ(std::count(only.tokens().begin(), only.tokens().end(), 1), 10) << "10 documents";
  json manifest = json::parse(test::read_bytes(dir / "out/manifest.json"));
  EXPECT_EQ(manifest["splits"]["train"]["docs"], 10);
}

TEST(Prepare, AFailedRunLeavesThePreviousOutputUntouched) {
  TempDir dir;
  prepare(options(test::bundled("text/fineweb_docs200.jsonl.xz"), dir / "out", 0));
  const std::string before = test::read_bytes(dir / "out/fineweb_train_000000.bin");
  const std::string manifest = test::read_bytes(dir / "out/manifest.json");
  // Valid documents first, then a malformed line: the failure comes after shards were staged.
  std::string input;
  for (int i = 0; i < 2000; ++i) input += "{\"text\": \"some words to tokenize\"}\n";
  input += "{broken\n";
  test::write_bytes(dir / "bad.jsonl", input);
  PrepareOptions o = options(dir / "bad.jsonl", dir / "out", 0);
  o.force = true;
  o.shard_tokens = 1000;
  EXPECT_THROW(prepare(o), Error);
  EXPECT_EQ(test::read_bytes(dir / "out/fineweb_train_000000.bin"), before);
  EXPECT_EQ(test::read_bytes(dir / "out/manifest.json"), manifest);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "out")) ++entries;
  EXPECT_EQ(entries, 2) << "no staged shards or staging directory left behind";
}

TEST(Prepare, CliOptionRules) {
  TempDir dir;
  const std::string in = test::bundled("text/fineweb_docs200.jsonl.xz").string(), out = (dir / "out").string();
  auto r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "--train-tokenizer", "512", "-o", out});
  EXPECT_EQ(r.exit_code, 2) << "--tokenizer and --train-tokenizer exclude each other: " << r.err;
  r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "--tokenizer-out", "x.model", "-o", out});
  EXPECT_EQ(r.exit_code, 2) << "--tokenizer-out needs --train-tokenizer: " << r.err;
  r = test::run_pgolf({"prepare", "-i", in, "-o", out});
  EXPECT_EQ(r.exit_code, 2) << "a tokenizer is required: " << r.err;
  r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "-o", out, "--shard-tokens", "3000000000"});
  EXPECT_EQ(r.exit_code, 2) << "shards hold at most INT32_MAX tokens: " << r.err;
  r = test::run_pgolf({"prepare", "-i", in, "-t", kSp1024.string(), "-o", out, "--max-docs", "30", "--val-docs", "20"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("30 docs"), std::string::npos) << "progress and summary go to stderr: " << r.err;
  json manifest = json::parse(test::read_bytes(dir / "out/manifest.json"));
  EXPECT_EQ(manifest["splits"]["val"]["docs"], 20);
  EXPECT_EQ(manifest["splits"]["train"]["docs"], 10);
}

TEST(Prepare, TextEdgeCases) {
  TempDir dir;
  // A trailing blank line in JSON lines is tolerated; CRLF text loses its CR.
  test::write_bytes(dir / "a.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}\n\n");
  EXPECT_EQ(prepare(options(dir / "a.jsonl", dir / "o1", 0)).train.docs, 2);
  test::write_bytes(dir / "crlf.txt", "hello world\r\nsecond\r\n");
  prepare(options(dir / "crlf.txt", dir / "o2", 0));
  test::write_bytes(dir / "lf.txt", "hello world\nsecond\n");
  prepare(options(dir / "lf.txt", dir / "o3", 0));
  EXPECT_EQ(test::read_bytes(dir / "o2/fineweb_train_000000.bin"), test::read_bytes(dir / "o3/fineweb_train_000000.bin"));
  // An empty file holds no documents, in every mode.
  test::write_bytes(dir / "empty.txt", "");
  for (TxtDocuments mode : {TxtDocuments::line, TxtDocuments::paragraph, TxtDocuments::file}) {
    PrepareOptions o = options(dir / "empty.txt", dir / "o4", 0);
    o.txt_documents = mode;
    try {
      prepare(o);
      ADD_FAILURE() << "an empty input must be an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::data);
      EXPECT_NE(std::string(e.what()).find("no documents"), std::string::npos) << e.what();
    }
  }
  // A line longer than the reader's 1 MiB buffer survives intact.
  std::string long_text(3 << 20, 'a');
  for (std::size_t i = 0; i < long_text.size(); i += 7) long_text[i] = ' ';
  test::write_bytes(dir / "long.txt", long_text + "\nshort\n");
  PrepareResult r = prepare(options(dir / "long.txt", dir / "o5", 0));
  EXPECT_EQ(r.train.docs, 2);
  auto tokens = read_all((dir / "o5/fineweb_train_*.bin").string());
  const Tokenizer tok(kSp1024);
  EXPECT_EQ(tokens.size(), tok.encode(long_text).size() + tok.encode("short").size() + 2);
}

TEST(Prepare, MalformedInputsNameFileAndLine) {
  TempDir dir;
  struct Case {
    const char* content;
    const char* fragment;
  };
  for (const Case& c : {Case{"{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", "in.jsonl:2: no \"text\" field"},
                        Case{"{\"text\": \"a\"}\nnot json\n", "in.jsonl:2: invalid JSON"},
                        Case{"{\"text\": 5}\n", "in.jsonl:1: \"text\" is not a string"},
                        Case{"{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", "in.jsonl:2: empty line"},
                        Case{"{\"text\": \"a\"}\n\n\n{\"text\": \"b\"}\n", "in.jsonl:2: empty line"}}) {
    SCOPED_TRACE(c.content);
    test::write_bytes(dir / "in.jsonl", c.content);
    auto r = test::run_pgolf({"prepare", "-i", (dir / "in.jsonl").string(), "-t", kSp1024.string(), "-o",
                              (dir / "out").string(), "--force"});
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << r.err;
  }
  std::string xz = test::read_bytes(test::bundled("text/fineweb_docs200.jsonl.xz"));
  test::write_bytes(dir / "cut.jsonl.xz", xz.substr(0, xz.size() / 2));
  auto r = test::run_pgolf({"prepare", "-i", (dir / "cut.jsonl.xz").string(), "-t", kSp1024.string(), "-o",
                            (dir / "out").string(), "--force"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("cut.jsonl.xz"), std::string::npos) << r.err;
}

TEST(Prepare, TrainsATokenizerWithTheChallengeSettings) {
  TempDir dir;
  PrepareOptions o = options(test::bundled("text/fineweb_docs200.jsonl.xz"), dir / "out", 20);
  o.tokenizer.clear();
  o.training.vocab_size = 512;
  o.training.max_docs = 60;
  o.training.output = dir / "tok/sp512.model";
  PrepareResult r = prepare(o);
  EXPECT_EQ(r.tokenizer, dir / "tok/sp512.model");
  EXPECT_TRUE(fs::exists(dir / "tok/sp512.vocab"));
  Tokenizer tok(r.tokenizer);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_TRUE(convention_deviations(tok).empty());
  for (int id = 4; id < 260; ++id) EXPECT_TRUE(tok.is_byte(id)) << id;
  auto all = read_all((dir / "out/fineweb_*_*.bin").string());
  for (auto id : all) ASSERT_LT(id, 512);
  EXPECT_EQ(r.val.docs + r.train.docs, 200);
}

}  // namespace
}  // namespace pgolf::data

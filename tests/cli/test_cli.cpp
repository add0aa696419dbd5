#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace pgolf {
namespace {

using test::run_pgolf;

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

TEST(Cli, VersionNamesCommitBackendsAndDevices) {
  auto r = run_pgolf({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "pgolf 0.1.0 (git ")) << r.out;
  EXPECT_TRUE(contains(r.out, "backends compiled in: cpu")) << r.out;
  EXPECT_TRUE(contains(r.out, "sentencepiece")) << r.out;
  EXPECT_TRUE(contains(r.out, "cpu: ")) << r.out;
#ifdef PGOLF_TEST_CUDA_BUILD
  EXPECT_TRUE(contains(r.out, "cuda (")) << r.out;
#endif
  // Either a GPU is listed, or the CUDA build says plainly that there is none, or CUDA is absent.
  EXPECT_TRUE(contains(r.out, "gpu 0:") || contains(r.out, "gpu: none usable") || contains(r.out, "cuda: not compiled in"))
      << r.out;
}

TEST(Cli, HelpExistsForEveryCommand) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"--help"},
                                                                {"prepare", "--help"},
                                                                {"inspect", "--help"},
                                                                {"inspect", "shard", "--help"},
                                                                {"inspect", "tokenizer", "--help"},
                                                                {"inspect", "config", "--help"},
                                                                {"inspect", "checkpoint", "--help"},
                                                                {"inspect", "artifact", "--help"},
                                                                {"pack", "--help"},
                                                                {"eval", "--help"},
                                                                {"run", "--help"}}) {
    auto r = run_pgolf(args);
    SCOPED_TRACE(args.size() > 1 ? args[args.size() - 2] : args[0]);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "Usage:")) << r.out;
    EXPECT_TRUE(contains(r.out, "Options:")) << r.out;
  }
  EXPECT_TRUE(contains(run_pgolf({"prepare", "--help"}).out, "--val-docs"));
  EXPECT_TRUE(contains(run_pgolf({"pack", "--help"}).out, "export.prune_to_budget"));
  EXPECT_TRUE(contains(run_pgolf({"eval", "--help"}).out, "--artifact"));
  EXPECT_TRUE(contains(run_pgolf({"--help"}).out, "Exit codes"));
}

TEST(Cli, UsageErrorsExitWithCode2) {
  EXPECT_EQ(run_pgolf({}).exit_code, 2);
  EXPECT_EQ(run_pgolf({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(run_pgolf({"inspect"}).exit_code, 2);
  EXPECT_EQ(run_pgolf({"prepare", "--out", "/tmp/x"}).exit_code, 2) << "--input is required";
  auto r = run_pgolf({"inspect", "config", "--set", "nonsense"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "PATH=VALUE")) << r.err;
}

TEST(Cli, InspectConfigPrintsTheResolvedConfigOrAnErrorNamingThePath) {
  auto r = run_pgolf({"inspect", "config", (test::source_dir() / "configs/tiny.json").string(), "--set",
                      "model.num_layers=5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "\"num_layers\": 5")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"name\": \"tiny\"")) << r.out;
  test::TempDir dir;
  test::write_bytes(dir / "bad.json", R"({"model": {"xsa_last_n": true}})");
  r = run_pgolf({"inspect", "config", (dir / "bad.json").string()});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(contains(r.err, "model.xsa_last_n")) << r.err;
  EXPECT_TRUE(contains(r.err, "bad.json")) << r.err;
  r = run_pgolf({"inspect", "config", "--schema"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "eval.slot.variant")) << r.out;
}

TEST(Cli, InspectTokenizerAndShardOnTheBundledData) {
  const std::string tok = test::bundled("tokenizers/fineweb_1024_bpe.model").string();
  auto r = run_pgolf({"inspect", "tokenizer", tok});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "byte fallback      256 pieces, ids 4..259")) << r.out;
  EXPECT_TRUE(contains(r.out, "pad 0, bos 1, eos 2, unk 3")) << r.out;
  EXPECT_TRUE(contains(r.out, "match the challenge's")) << r.out;
  r = run_pgolf({"inspect", "shard", test::bundled("fineweb_mini_sp1024/fineweb_val_000000.bin").string(), "-t", tok});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "1,040,298")) << r.out;
  EXPECT_TRUE(contains(r.out, "2,504,867")) << r.out;
  r = run_pgolf({"inspect", "tokenizer", tok, "--tables"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "939,\"\xE2\x96\x81\",0,1,0")) << "U+2581: 0 base bytes, leading space, not a boundary";
}

}  // namespace
}  // namespace pgolf

// Bad input must never become a wrong number or a broken file (issue 12): non-finite weights,
// checkpoint/config mismatches, shards of another tokenizer, memory that cannot fit, diverged
// runs, untrustworthy checkpoint pointers and outputs that cannot be written. Each case runs the
// binary as a user would and asserts the exit code and what the message names; each failed on
// the code before the fix (run them against another build with PGOLF_TEST_BINARY=...).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/json.hpp"
#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "config/config_loader.hpp"
#include "data/shard.hpp"
#include "export/artifact.hpp"
#include "io/safetensors.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using test::run_pgolf;

const std::string kTiny = (test::source_dir() / "configs/tiny.json").string();

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A tiny run, small enough for a test: 512-token steps, 1,025 val tokens.
std::vector<std::string> run_args(const fs::path& out, std::int64_t iterations, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"run",   kTiny,  "--out", out.string(), "--set", "train.iterations=" + std::to_string(iterations),
                                "--set", "train.batch_tokens=512", "--set", "train.warmdown.iters=2", "--set",
                                "data.val_max_tokens=1025", "--set", "eval.stride=128", "--set", "export.count_code=false"};
  for (auto& s : extra) {
    a.push_back("--set");
    a.push_back(std::move(s));
  }
  return a;
}

fs::path init_checkpoint(const test::TempDir& dir, const std::string& name = "init.safetensors") {
  const fs::path p = dir / name;
  const auto r = run_pgolf({"init", "-c", kTiny, "-o", p.string()});
  if (r.exit_code != 0) throw std::runtime_error("pgolf init failed: " + r.err);
  return p;
}

// A copy of a checkpoint with value `index` of tensor `tensor` replaced.
void poke_checkpoint(const fs::path& from, const fs::path& to, const std::string& tensor, std::size_t index, float value) {
  const auto file = io::SafetensorsFile::open(from);
  io::SafetensorsWriter w;
  for (const auto& t : file.tensors()) {
    std::vector<float> v = file.to_float32(t);
    if (t.name == tensor) v.at(index) = value;
    w.add_f32(t.name, t.shape, v);
  }
  for (const auto& [k, v] : file.metadata()) w.set_metadata(k, v);
  w.write(to);
}

// The files in `dir` (to check that a failed command left nothing behind, temporaries included).
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// ----- 1, 2: non-finite weights -------------------------------------------------------------

TEST(NonFiniteWeights, ACheckpointWithNanOrInfIsAFormatErrorNamingTensorAndIndex) {
  test::TempDir dir;
  const fs::path good = init_checkpoint(dir);
  const std::string tensor = "blocks.1.attn.c_q.weight";
  struct Case {
    float value;
    const char* shown;
  };
  for (const Case& c : {Case{std::numeric_limits<float>::quiet_NaN(), "NaN"}, Case{std::numeric_limits<float>::infinity(), "+Inf"},
                        Case{-std::numeric_limits<float>::infinity(), "-Inf"}}) {
    SCOPED_TRACE(c.shown);
    const fs::path bad = dir / "bad.safetensors";
    poke_checkpoint(good, bad, tensor, 17, c.value);
    const auto e = run_pgolf({"eval", "-c", kTiny, "--checkpoint", bad.string(), "--set", "data.val_max_tokens=1025"});
    EXPECT_EQ(e.exit_code, 5) << e.err;
    EXPECT_TRUE(contains(e.err, bad.string())) << e.err;
    EXPECT_TRUE(contains(e.err, "\"" + tensor + "\"")) << e.err;
    EXPECT_TRUE(contains(e.err, std::string(c.shown) + " at index 17")) << e.err;
    EXPECT_FALSE(contains(e.out, "val_bpb")) << "nothing is evaluated: " << e.out;
    // Inspecting still works, and says where the damage is.
    const auto i = run_pgolf({"inspect", "checkpoint", bad.string()});
    EXPECT_EQ(i.exit_code, 0) << i.err;
    EXPECT_TRUE(contains(i.out, "NO: 1 tensor(s) hold NaN/Inf")) << i.out;
    EXPECT_TRUE(contains(i.out, "\"" + tensor + "\" " + c.shown + " at index 17")) << i.out;
  }
}

TEST(NonFiniteWeights, PackRefusesThemBeforeWritingAnything) {
  test::TempDir dir;
  const fs::path good = init_checkpoint(dir);
  const fs::path out_dir = dir / "out";
  fs::create_directories(out_dir);
  for (float value : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    const fs::path bad = dir / "bad.safetensors";
    poke_checkpoint(good, bad, "tok_emb.weight", 3, value);
    const auto p = run_pgolf({"pack", "-c", kTiny, "--checkpoint", bad.string(), "-o", (out_dir / "a.pgolf").string(),
                              "--results", (out_dir / "pack.json").string()});
    EXPECT_EQ(p.exit_code, 5) << p.err;
    EXPECT_TRUE(contains(p.err, "\"tok_emb.weight\"")) << p.err;
    EXPECT_EQ(files_in(out_dir), std::vector<std::string>{}) << "no artifact, no results, no temporary";
  }
}

TEST(NonFiniteWeights, AnArtifactWithANanScaleOrValueIsAFormatError) {
  test::TempDir dir;
  const fs::path good = init_checkpoint(dir), art = dir / "good.pgolf";
  ASSERT_EQ(run_pgolf({"pack", "-c", kTiny, "--checkpoint", good.string(), "-o", art.string(), "--set",
                       "export.count_code=false"})
                .exit_code,
            0);
  const exporter::Artifact a = exporter::read_artifact_file(art);
  config::Config c = config::load_config(fs::path(kTiny), {"export.count_code=false"}).config;
  // Re-encode the same tensors with one float16 NaN: a row scale of an int6 matrix, or a value
  // of an fp16 passthrough tensor.
  for (const exporter::Scheme scheme : {exporter::Scheme::int6, exporter::Scheme::fp16}) {
    SCOPED_TRACE(exporter::scheme_name(scheme));
    std::vector<exporter::QuantizedTensor> tensors = a.container.tensors;
    std::string poked;
    for (auto& t : tensors)
      if (t.scheme == scheme && !t.scales.empty()) {
        t.scales[t.scales.size() / 2] = 0x7e00;  // a float16 NaN
        poked = t.name;
        break;
      }
    ASSERT_FALSE(poked.empty());
    const auto container = exporter::encode_container(tensors, a.container.metadata);
    const auto bytes =
        exporter::encode_artifact(exporter::compress(container, c.export_), c.export_, container.size(), {}, nullptr);
    const fs::path bad = dir / "bad.pgolf";
    test::write_bytes(bad, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    for (const auto& args : {std::vector<std::string>{"inspect", "artifact", bad.string()},
                             std::vector<std::string>{"eval", "-c", kTiny, "--artifact", bad.string(), "--set",
                                                      "data.val_max_tokens=1025"}}) {
      const auto r = run_pgolf(args);
      EXPECT_EQ(r.exit_code, 5) << args[0] << ": " << r.err;
      EXPECT_TRUE(contains(r.err, "\"" + poked + "\"")) << r.err;
      EXPECT_TRUE(contains(r.err, "NaN at index")) << r.err;
    }
  }
}

// ----- 3: checkpoint metadata --------------------------------------------------------------

TEST(CheckpointMetadata, EvaluatingWithAnotherModelConfigIsExit3NamingTheKeys) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir);  // tiny: xsa_last_n = 2
  const auto r = run_pgolf({"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--set", "data.val_max_tokens=1025",
                            "--set", "model.xsa_last_n=1", "--set", "model.qk_gain_init=2"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, ckpt.string())) << r.err;
  EXPECT_TRUE(contains(r.err, "model.xsa_last_n = 2 in the checkpoint, 1 in the config")) << r.err;
  EXPECT_TRUE(contains(r.err, "model.qk_gain_init")) << r.err;
  EXPECT_TRUE(contains(r.err, "--allow-config-mismatch")) << r.err;
  // Saying so is allowed, with a warning naming the keys.
  const auto allowed = run_pgolf({"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--set", "data.val_max_tokens=1025",
                                  "--set", "model.xsa_last_n=1", "--allow-config-mismatch"});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_TRUE(contains(allowed.err, "warning: --allow-config-mismatch")) << allowed.err;
  EXPECT_TRUE(contains(allowed.err, "model.xsa_last_n")) << allowed.err;
  // pack reads the same metadata.
  const auto p = run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", (dir / "a.pgolf").string(), "--set",
                            "model.xsa_last_n=1"});
  EXPECT_EQ(p.exit_code, 3) << p.err;
  EXPECT_TRUE(contains(p.err, ckpt.string() + ": was trained with a different model config")) << p.err;
  EXPECT_TRUE(contains(p.err, "model.xsa_last_n")) << p.err;
  EXPECT_FALSE(fs::exists(dir / "a.pgolf"));
}

TEST(CheckpointMetadata, TheRunsExportedWeightsRecordTheirModelConfig) {
  test::TempDir dir;
  const fs::path out = dir / "run";
  ASSERT_EQ(run_pgolf(run_args(out, 1, {"export.enabled=false"})).exit_code, 0);
  const auto r = run_pgolf({"eval", "-c", kTiny, "--checkpoint", (out / "model.safetensors").string(), "--set",
                            "data.val_max_tokens=1025", "--set", "model.xsa_last_n=1"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "model.xsa_last_n")) << r.err;
}

TEST(CheckpointMetadata, ResumeRefusesAModelFileOfAnotherStep) {
  test::TempDir dir;
  const fs::path out = dir / "run";
  ASSERT_EQ(run_pgolf(run_args(out, 2, {"train.checkpoint_every=1", "export.enabled=false"})).exit_code, 0);
  const fs::path ck = out / "checkpoints";
  ASSERT_TRUE(fs::exists(ck / "step_0000001") && fs::exists(ck / "step_0000002"));
  fs::copy_file(ck / "step_0000001/model.safetensors", ck / "step_0000002/model.safetensors",
                fs::copy_options::overwrite_existing);
  const auto r = run_pgolf({"run", "--resume", "--out", out.string(), "--set", "train.iterations=3"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "model.safetensors is of step 1 but state.safetensors of step 2")) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000001")) << "names the intact older checkpoint: " << r.err;
}

// ----- 4: shards and tokenizer --------------------------------------------------------------

TEST(ShardManifest, PrepareRecordsTheTokenizerHashAndReadersCheckIt) {
  test::TempDir dir;
  const fs::path tok = test::bundled("tokenizers/fineweb_1024_bpe.model"), out = dir / "shards";
  const auto p = run_pgolf({"prepare", "-i", test::bundled("text/fineweb_docs200.jsonl.xz").string(), "-t", tok.string(),
                            "-o", out.string(), "--val-docs", "20", "--max-docs", "60"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  json manifest = json::parse(test::read_bytes(out / "manifest.json"));
  EXPECT_EQ(manifest["tokenizer_sha256"], sha256_file_hex(tok));
  const std::vector<std::string> data = {"--set", "data.val_files=" + (out / "fineweb_val_*.bin").string(), "--set",
                                         "data.train_files=" + (out / "fineweb_train_*.bin").string(), "--set",
                                         "data.val_max_tokens=1025"};
  const fs::path ckpt = init_checkpoint(dir);
  auto eval_args = std::vector<std::string>{"eval", "-c", kTiny, "--checkpoint", ckpt.string()};
  eval_args.insert(eval_args.end(), data.begin(), data.end());
  ASSERT_EQ(run_pgolf(eval_args).exit_code, 0) << "the shards' own tokenizer passes";

  // The shards of another tokenizer (the manifest's hash is another file's).
  manifest["tokenizer"] = "other_1024.model";
  manifest["tokenizer_sha256"] = std::string(64, '0');
  test::write_bytes(out / "manifest.json", manifest.dump(2));
  auto e = run_pgolf(eval_args);
  EXPECT_EQ(e.exit_code, 4) << e.err;
  EXPECT_TRUE(contains(e.err, "data.val_files")) << e.err;
  EXPECT_TRUE(contains(e.err, "other_1024.model")) << "names the shards' tokenizer: " << e.err;
  EXPECT_TRUE(contains(e.err, tok.string())) << "and the config's: " << e.err;
  auto run = std::vector<std::string>{"run", kTiny, "--out", (dir / "run").string(), "--set", "train.iterations=1",
                                      "--set", "train.batch_tokens=512"};
  run.insert(run.end(), data.begin(), data.end());
  auto r = run_pgolf(run);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(contains(r.err, "data.train_files")) << r.err;

  manifest["tokenizer_sha256"] = 12;
  test::write_bytes(out / "manifest.json", manifest.dump(2));
  e = run_pgolf(eval_args);
  EXPECT_EQ(e.exit_code, 4) << e.err;
  EXPECT_TRUE(contains(e.err, (out / "manifest.json").string() + ": \"tokenizer_sha256\" is not a string")) << e.err;
  test::write_bytes(out / "manifest.json", "{ not json");
  e = run_pgolf(eval_args);
  EXPECT_EQ(e.exit_code, 4) << e.err;
  EXPECT_TRUE(contains(e.err, (out / "manifest.json").string())) << e.err;

  // A manifest of an older pgolf (no hash) is checked by vocabulary size.
  manifest.erase("tokenizer_sha256");
  manifest["vocab_size"] = 4096;
  test::write_bytes(out / "manifest.json", manifest.dump(2));
  e = run_pgolf(eval_args);
  EXPECT_EQ(e.exit_code, 4) << e.err;
  EXPECT_TRUE(contains(e.err, "vocab 4096")) << e.err;
}

TEST(ShardManifest, ATrainStreamShorterThanOneSequenceIsAnError) {
  test::TempDir dir;
  std::vector<std::uint16_t> tokens(200, 5);  // tiny's sequences are 256 tokens
  data::write_shard(dir / "short_train_000000.bin", tokens);
  const auto r = run_pgolf(run_args(dir / "run", 1, {"data.train_files=" + (dir / "short_train_*.bin").string()}));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(contains(r.err, "data.train_files")) << r.err;
  EXPECT_TRUE(contains(r.err, "200 tokens, fewer than one sequence")) << r.err;
}

// ----- 5: memory ------------------------------------------------------------------------------

TEST(MemoryPlan, ARunThatCannotFitIsRefusedBeforeAllocating) {
  test::TempDir dir;
  // 2^28 tokens per step: terabytes of activations.
  const auto r = run_pgolf(run_args(dir / "run", 1, {"train.batch_tokens=268435456"}));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(contains(r.err, "train.batch_tokens")) << r.err;
  EXPECT_TRUE(contains(r.err, "model.*")) << r.err;
  EXPECT_TRUE(contains(r.err, "are available")) << r.err;
  EXPECT_FALSE(contains(r.err, "bad_alloc")) << r.err;
  EXPECT_FALSE(fs::exists(dir / "run" / "config.json")) << "refused before the run started";
  const auto b = run_pgolf({"bench", "-c", kTiny, "--batch", "1000000"});
  EXPECT_EQ(b.exit_code, 3) << b.err;
  EXPECT_TRUE(contains(b.err, "--batch")) << b.err;
  const auto i = run_pgolf({"init", "-c", kTiny, "-o", (dir / "big.safetensors").string(), "--set",
                            "model.model_dim=65536", "--set", "model.num_heads=512", "--set", "model.num_kv_heads=512"});
  EXPECT_EQ(i.exit_code, 3) << i.err;
  EXPECT_TRUE(contains(i.err, "model.*")) << i.err;
}

TEST(MemoryPlan, EveryModelCommandPrintsItsPlan) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir);
  const auto e = run_pgolf({"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--set", "data.val_max_tokens=1025"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_TRUE(contains(e.err, "memory: parameters ")) << e.err;
  EXPECT_TRUE(contains(e.err, " available (")) << e.err;
  const auto b = run_pgolf({"bench", "-c", kTiny, "--batch", "1", "--steps", "1", "--warmup", "0"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_TRUE(contains(b.err, "memory: parameters ")) << b.err;
}

// ----- 6: diverged runs -------------------------------------------------------------------------

TEST(DivergedRun, LeavesResultsACurveAndALogEndingWithTheMessageAndResumesFromAnOlderCheckpoint) {
  test::TempDir dir;
  const fs::path out = dir / "run";
  ASSERT_EQ(run_pgolf(run_args(out, 3, {"train.checkpoint_every=1", "export.enabled=false"})).exit_code, 0);
  // Resuming may change the learning rates (said in the log); absurd ones make step 4's update
  // destroy the weights and step 5's loss non-finite.
  const auto r = run_pgolf({"run", "--resume", "--out", out.string(), "--set", "train.iterations=6", "--set",
                            "optim.scalar.lr=1e30", "--set", "optim.embed.lr=1e30", "--set", "train.grad_clip_norm=0"});
  ASSERT_EQ(r.exit_code, 8) << r.err;
  const json res = json::parse(test::read_bytes(out / "results.json"));
  EXPECT_EQ(res["status"], "diverged");
  EXPECT_EQ(res["diverged_at_step"], 5);
  EXPECT_EQ(res["steps"], 4) << "the steps that finished";
  EXPECT_EQ(res["last_finite_step"], 4);
  EXPECT_TRUE(std::isfinite(res["last_finite_loss"].get<double>())) << res.dump();
  EXPECT_EQ(res["train_losses"].size(), 4u) << "the history survives";
  EXPECT_TRUE(contains(res["message"], "training loss is")) << res.dump();
  EXPECT_TRUE(fs::exists(out / "loss_curve.svg"));
  const std::string log = test::read_bytes(out / "train.log");
  EXPECT_TRUE(contains(log, "changed recovery knobs")) << log;
  EXPECT_TRUE(contains(log, "optim.scalar.lr = ")) << log;
  EXPECT_TRUE(contains(log, " in the checkpoint, 1e+30 in the config")) << log;
  const std::string last_line = split(std::string(trim(log)), '\n').back();
  EXPECT_TRUE(contains(last_line, "diverged") && contains(last_line, "training loss is")) << last_line;
  EXPECT_TRUE(contains(last_line, "--resume")) << "says how to continue: " << last_line;

  // Back to the last checkpoint before the bad rates, with sane ones.
  const auto again = run_pgolf({"run", "--resume-from", "step_0000003", "--out", out.string(), "--set",
                                "optim.scalar.lr=0.01", "--set", "optim.embed.lr=0.01", "--set", "train.grad_clip_norm=0.3",
                                "--set", "train.iterations=6"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const json done = json::parse(test::read_bytes(out / "results.json"));
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["steps"], 6);
}

TEST(DivergedRun, NonFiniteWeightsAreNeverSavedSoLatestStaysUsable) {
  test::TempDir dir;
  const fs::path out = dir / "run";
  ASSERT_EQ(run_pgolf(run_args(out, 2, {"train.checkpoint_every=1", "export.enabled=false"})).exit_code, 0);
  // A learning rate beyond float32's range turns step 3's update into Inf/NaN weights while its
  // loss (computed before the update) is still finite.
  const auto r = run_pgolf({"run", "--resume", "--out", out.string(), "--set", "train.iterations=5", "--set",
                            "train.checkpoint_every=1", "--set", "optim.scalar.lr=1e39", "--set", "optim.embed.lr=1e39",
                            "--set", "train.grad_clip_norm=0"});
  ASSERT_EQ(r.exit_code, 8) << r.err;
  EXPECT_TRUE(contains(r.err, "after step 3: the weight \"")) << r.err;
  EXPECT_TRUE(contains(r.err, "training stopped without saving it")) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000002")) << r.err;
  const json res = json::parse(test::read_bytes(out / "results.json"));
  EXPECT_EQ(res["status"], "diverged");
  EXPECT_EQ(res["diverged_at_step"], 3) << "the step whose update broke the weights";
  EXPECT_EQ(std::string(trim(test::read_bytes(out / "checkpoints/latest"))), "step_0000002");
  // So a plain --resume (with sane rates) just works.
  const auto again = run_pgolf({"run", "--resume", "--out", out.string(), "--set", "train.iterations=4", "--set",
                                "optim.scalar.lr=0.01", "--set", "optim.embed.lr=0.01"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// ----- 7: checkpoint pointers -----------------------------------------------------------------

class CheckpointPointers : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = dir_ / "run";
    const auto r = run_pgolf(run_args(out_, 2, {"train.checkpoint_every=1", "export.enabled=false"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(std::string(trim(test::read_bytes(ck() / "latest"))), "step_0000002");
  }
  fs::path ck() const { return out_ / "checkpoints"; }
  test::RunResult resume(std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"run", "--resume", "--out", out_.string(), "--set", "train.iterations=3"};
    a.insert(a.end(), extra.begin(), extra.end());
    return run_pgolf(a);
  }
  test::TempDir dir_;
  fs::path out_;
};

TEST_F(CheckpointPointers, LatestMustNameAStepDirectoryInsideCheckpoints) {
  for (const std::string bad : {"../../etc", "/tmp", "step_0000002/../../x", "model.safetensors"}) {
    SCOPED_TRACE(bad);
    test::write_bytes(ck() / "latest", bad + "\n");
    const auto r = resume();
    EXPECT_EQ(r.exit_code, 5) << r.err;
    EXPECT_TRUE(contains(r.err, (ck() / "latest").string())) << r.err;
    EXPECT_TRUE(contains(r.err, "not a step_N checkpoint directory")) << r.err;
    EXPECT_TRUE(contains(r.err, "--resume-from step_0000002")) << r.err;
  }
}

TEST_F(CheckpointPointers, AMissingOrEmptyLatestNamesTheNewestIntactCheckpoint) {
  fs::remove(ck() / "latest");
  auto r = resume();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "is missing")) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000002")) << r.err;
  test::write_bytes(ck() / "latest", "");
  r = resume();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "is empty")) << r.err;
  test::write_bytes(ck() / "latest", "step_0000009\n");
  r = resume();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "does not exist")) << r.err;
  // And the named checkpoint resumes.
  r = resume({"--resume-from", "step_0000002"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "resumed from " + (ck() / "step_0000002").string())) << r.err;
}

TEST_F(CheckpointPointers, ATruncatedNewestCheckpointPointsToTheOlderOne) {
  const fs::path state = ck() / "step_0000002/state.safetensors";
  const std::string bytes = test::read_bytes(state);
  test::write_bytes(state, bytes.substr(0, bytes.size() / 2));
  auto r = resume();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "step_0000002, which is damaged")) << r.err;
  EXPECT_TRUE(contains(r.err, state.string())) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000001 to continue from step 1")) << r.err;
  r = resume({"--resume-from", "step_0000002"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000002: the checkpoint is damaged")) << r.err;
  EXPECT_TRUE(contains(r.err, "the newest intact checkpoint before it is step_0000001")) << r.err;
  r = resume({"--resume-from", "../step_0000001"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from ../step_0000001: expected the name of a checkpoint directory")) << r.err;
  r = resume({"--resume-from", "step_0000001"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(test::read_bytes(out_ / "results.json"))["steps"], 3);
}

TEST_F(CheckpointPointers, ANonFiniteStateTensorMakesACheckpointDamaged) {
  // A checkpoint written by another tool, or by hand: an EMA holding an Inf.
  const fs::path state = ck() / "step_0000002/state.safetensors";
  poke_checkpoint(state, state, "ema", 5, std::numeric_limits<float>::infinity());
  const auto r = resume();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "\"ema\" holds +Inf at index 5")) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume-from step_0000001")) << r.err;
}

TEST_F(CheckpointPointers, AFreshRunNeverOverwritesAndForceChecksBeforeDeleting) {
  // Checkpoints without `latest` are still a run.
  fs::remove(ck() / "latest");
  auto r = run_pgolf(run_args(out_, 2));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "already holds a run (checkpoints up to step_0000002)")) << r.err;
  // --force with a new config that cannot run keeps the old run.
  r = run_pgolf({"run", kTiny, "--out", out_.string(), "--force", "--set", "train.batch_tokens=268435456"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(fs::exists(out_ / "results.json"));
  EXPECT_TRUE(fs::exists(ck() / "step_0000002"));
  r = run_pgolf(run_args(out_, 1, {"export.enabled=false"}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  auto forced = run_args(out_, 1, {"export.enabled=false"});
  forced.push_back("--force");
  r = run_pgolf(forced);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "removed the previous run's outputs")) << r.err;
  EXPECT_EQ(json::parse(test::read_bytes(out_ / "results.json"))["steps"], 1);
}

TEST_F(CheckpointPointers, PeriodicCheckpointsAreLoggedAndCountInTheTrainingTime) {
  const std::string log = test::read_bytes(out_ / "train.log");
  EXPECT_TRUE(contains(log, "checkpoint step_0000001 saved in ")) << log;
  EXPECT_TRUE(contains(log, "counted in the training time")) << log;
  const json res = json::parse(test::read_bytes(out_ / "results.json"));
  double step_s = 0;
  for (const auto& s : res["train_losses"]) step_s += s["step_ms"].get<double>() / 1e3;
  // One save (after step 1; the one at the end is not training time) of a few MB with fsyncs.
  EXPECT_GT(res["train_seconds"].get<double>(), step_s + 1e-4) << res.dump();
}

TEST(CheckpointDefaults, LongRunsCheckpointByTrainingTime) {
  const auto r = run_pgolf({"inspect", "config", kTiny});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json c = json::parse(r.out);
  EXPECT_EQ(c["train"]["checkpoint_every_s"], 600.0) << "every 10 minutes of training, and never within a 600 s record cap";
  test::TempDir dir;
  const auto run = run_pgolf(run_args(dir / "run", 3, {"train.checkpoint_every_s=1e-9", "export.enabled=false"}));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string log = test::read_bytes(dir / "run/train.log");
  EXPECT_TRUE(contains(log, "checkpoint step_0000001 saved in ")) << log;
  EXPECT_TRUE(contains(log, "checkpoint step_0000002 saved in ")) << log;
}

// ----- 8: errors with causes ----------------------------------------------------------------------

TEST(ErrorCauses, UnwritableOutputsFailBeforeTheWorkWithTheOsReason) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir);
  const fs::path file = dir / "a_file";
  test::write_bytes(file, "x");
  const std::string under_file = (file / "sub" / "out.json").string();  // "Not a directory", for root too
  for (const std::string flag : {"--results", "--nll-out"}) {
    SCOPED_TRACE(flag);
    const auto r = run_pgolf({"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--set", "data.val_max_tokens=1025",
                              flag, under_file});
    EXPECT_EQ(r.exit_code, 6) << r.err;
    EXPECT_TRUE(contains(r.err, flag + " " + under_file)) << r.err;
    EXPECT_TRUE(contains(r.err, "Not a directory")) << r.err;
    EXPECT_FALSE(contains(r.out, "val_bpb")) << "checked before evaluating: " << r.out;
  }
  auto p = run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", under_file});
  EXPECT_EQ(p.exit_code, 6) << p.err;
  EXPECT_TRUE(contains(p.err, "Not a directory")) << p.err;
  auto r = run_pgolf(run_args(file / "run", 1));
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_TRUE(contains(r.err, "--out")) << r.err;
  EXPECT_TRUE(contains(r.err, "Not a directory")) << r.err;
  EXPECT_FALSE(contains(r.out, "step 1/1")) << "checked before training: " << r.out;
}

TEST(ErrorCauses, ExtractCodeIntoAnUnwritableDirectoryIsAnIoError) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir), art = dir / "a.pgolf";
  ASSERT_EQ(run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", art.string()}).exit_code, 0);
  const fs::path file = dir / "a_file";
  test::write_bytes(file, "x");
  auto r = run_pgolf({"inspect", "artifact", art.string(), "--extract-code", (file / "src").string()});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_TRUE(contains(r.err, "--extract-code")) << r.err;
  EXPECT_TRUE(contains(r.err, "Not a directory")) << r.err;
  if (::geteuid() != 0) {  // permission bits bind everyone but root
    const fs::path ro = dir / "read_only";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    r = run_pgolf({"inspect", "artifact", art.string(), "--extract-code", (ro / "src").string()});
    fs::permissions(ro, fs::perms::owner_all);
    EXPECT_EQ(r.exit_code, 6) << r.err;
    EXPECT_TRUE(contains(r.err, "Permission denied")) << r.err;
  }
}

TEST(ErrorCauses, RangeErrorsAreReadableAndResumeWithForceIsAUsageError) {
  for (const auto& args : {std::vector<std::string>{"eval", "--threads", "-1", "--checkpoint", "x"},
                           std::vector<std::string>{"bench", "--steps", "0"}}) {
    const auto r = run_pgolf(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_LT(r.err.size(), 200u) << r.err;
    EXPECT_FALSE(contains(r.err, "1797693134862315")) << r.err;
    EXPECT_TRUE(contains(r.err, "is too small; expected a whole number >= ")) << r.err;
  }
  const auto big = run_pgolf({"bench", "--steps", "99999999999"});
  EXPECT_EQ(big.exit_code, 2) << big.err;
  EXPECT_TRUE(contains(big.err, "too large (at most 2147483647)")) << big.err;
  test::TempDir dir;
  const auto r = run_pgolf({"run", "--resume", "--force", "--out", (dir / "run").string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "--resume excludes --force")) << r.err;
}

TEST(ErrorCauses, AnArtifactGivenAsACheckpointSaysWhichFlagToUse) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir), art = dir / "a.pgolf";
  ASSERT_EQ(run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", art.string()}).exit_code, 0);
  auto r = run_pgolf({"eval", "-c", kTiny, "--checkpoint", art.string()});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, art.string() + ": this is a pgolf artifact")) << r.err;
  EXPECT_TRUE(contains(r.err, "use --artifact")) << r.err;
  r = run_pgolf({"eval", "-c", kTiny, "--artifact", ckpt.string()});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_TRUE(contains(r.err, "use --checkpoint")) << r.err;
}

// ----- 9, 10: start-up output and results ----------------------------------------------------------

TEST(StartUp, OneSummaryLineByDefaultTheTablesWithVerboseAndInLayoutTxt) {
  test::TempDir dir;
  const fs::path ckpt = init_checkpoint(dir);
  const std::vector<std::string> eval = {"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--set", "data.val_max_tokens=1025"};
  const auto quiet = run_pgolf(eval);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_TRUE(contains(quiet.err, "model: 51 tensors, 778,644 parameters")) << quiet.err;
  EXPECT_FALSE(contains(quiet.err, "attn.q_rope")) << "no arena table: " << quiet.err;
  EXPECT_FALSE(contains(quiet.err, "bank ")) << "no parameter table: " << quiet.err;
  EXPECT_LT(split(quiet.err, '\n').size(), 15u) << quiet.err;
  auto verbose_args = eval;
  verbose_args.push_back("--verbose");
  const auto verbose = run_pgolf(verbose_args);
  ASSERT_EQ(verbose.exit_code, 0) << verbose.err;
  EXPECT_TRUE(contains(verbose.err, "attn.q_rope")) << verbose.err;
  EXPECT_TRUE(contains(verbose.err, "tok_emb.weight")) << verbose.err;

  const fs::path out = dir / "run";
  const auto r = run_pgolf(run_args(out, 1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(contains(r.err, "attn.q_rope")) << r.err;
  const std::string layout = test::read_bytes(out / "layout.txt");
  EXPECT_TRUE(contains(layout, "memory: parameters ")) << layout;
  EXPECT_TRUE(contains(layout, "blocks.3.mlp.proj.weight")) << "one row per tensor: " << layout;
  EXPECT_TRUE(contains(layout, "step0.attn.q_rope")) << "every arena buffer: " << layout;
  // results.json leads with the number a competitor reports: the artifact's val_bpb.
  const json res = json::parse(test::read_bytes(out / "results.json"));
  EXPECT_EQ(res.begin().key(), "val_bpb") << "the first key of the file";
  EXPECT_EQ(res["val_bpb"], res["roundtrip_eval"]["val_bpb"]);
  EXPECT_EQ(res["artifact_bytes"], res["export"]["artifact_bytes"]);
  EXPECT_TRUE(contains(res["val_bpb_of"], "artifact"));
}

// Started by mpirun -np 8 before multi-rank training exists, eight copies would each train the
// whole model and overwrite each other's outputs: refused before any work, naming the variable.
TEST(StartUp, SeveralProcessesUnderALauncherAreRefused) {
  const auto r = test::run_program(test::pgolf_binary(), {"bench", "-c", kTiny, "--batch", "1", "--steps", "1"},
                                   {"OMPI_COMM_WORLD_SIZE=8", "OMPI_COMM_WORLD_LOCAL_RANK=3"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("started as one of several processes (OMPI_COMM_WORLD_SIZE=8)"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("tokens/s"), std::string::npos) << "nothing ran";
}

}  // namespace
}  // namespace pgolf

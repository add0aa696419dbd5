// pgolf init / eval / bench through the binary, on the bundled data and the tiny config.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/json.hpp"
#include "config/config_loader.hpp"
#include "io/safetensors.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using test::run_pgolf;

const std::string kTiny = (test::source_dir() / "configs/tiny.json").string();

TEST(InitCommand, WritesTheParameterTableWithItsInitialisation) {
  test::TempDir dir;
  const auto out = dir / "init.safetensors";
  auto r = run_pgolf({"init", "-c", kTiny, "--seed", "5", "-o", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto file = io::SafetensorsFile::open(out);
  config::Config c = config::load_config(std::filesystem::path(kTiny), {}).config;
  model::ParamTable table(c.model);
  ASSERT_EQ(file.tensors().size(), table.specs().size());
  EXPECT_EQ(file.metadata().at("seed"), "5");
  for (const auto& p : table.specs()) {
    SCOPED_TRACE(p.name);
    const io::TensorView& t = file.at(p.name);
    EXPECT_EQ(t.shape, p.shape);
    auto v = file.to_float32(t);
    switch (p.init) {
      case model::InitKind::zeros:
        for (float x : v) ASSERT_EQ(x, 0.0f);
        break;
      case model::InitKind::constant:
        for (float x : v) ASSERT_FLOAT_EQ(x, static_cast<float>(p.init_value));
        break;
      case model::InitKind::normal: {
        double sq = 0;
        for (float x : v) sq += static_cast<double>(x) * x;
        EXPECT_NEAR(std::sqrt(sq / static_cast<double>(v.size())), p.init_value, 0.05 * p.init_value);
        break;
      }
      case model::InitKind::orthogonal: {
        // Rows orthonormal when rows <= cols, columns orthonormal otherwise.
        const auto rows = static_cast<std::size_t>(p.shape[0]), cols = static_cast<std::size_t>(p.shape[1]);
        const bool by_rows = rows <= cols;
        const std::size_t k = by_rows ? rows : cols, len = by_rows ? cols : rows;
        for (std::size_t a = 0; a < k; a += std::max<std::size_t>(1, k / 7))
          for (std::size_t b = 0; b < k; b += std::max<std::size_t>(1, k / 5)) {
            double dot = 0;
            for (std::size_t i = 0; i < len; ++i)
              dot += by_rows ? static_cast<double>(v[a * cols + i]) * v[b * cols + i]
                             : static_cast<double>(v[i * cols + a]) * v[i * cols + b];
            ASSERT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-5) << a << "," << b;
          }
        break;
      }
      case model::InitKind::resid_mix:
        for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], i < v.size() / 2 ? 1.0f : 0.0f);
        break;
    }
  }
  // Same seed, same bytes; another seed, other weights.
  auto again = dir / "again.safetensors", other = dir / "other.safetensors";
  ASSERT_EQ(run_pgolf({"init", "-c", kTiny, "--seed", "5", "-o", again.string()}).exit_code, 0);
  ASSERT_EQ(run_pgolf({"init", "-c", kTiny, "--seed", "6", "-o", other.string()}).exit_code, 0);
  EXPECT_EQ(test::read_bytes(out), test::read_bytes(again));
  EXPECT_NE(test::read_bytes(out), test::read_bytes(other));
}

TEST(EvalCommand, AnUntrainedModelPredictsUniformlyInBothModes) {
  test::TempDir dir;
  const auto ckpt = dir / "init.safetensors";
  ASSERT_EQ(run_pgolf({"init", "-c", kTiny, "-o", ckpt.string()}).exit_code, 0);
  // 2049 tokens: 2048 targets, 8 windows of 256 (nonoverlap) or 15 (sliding, stride 128). This
  // checks the plumbing (counts, files, bpb arithmetic); the numerics are checked against the
  // PyTorch twin in tests/model/test_interchange.cpp.
  for (const char* mode : {"nonoverlap", "sliding"}) {
    SCOPED_TRACE(mode);
    const auto nll = dir / (std::string(mode) + ".nll"), res = dir / (std::string(mode) + ".json");
    auto r = run_pgolf({"eval", "-c", kTiny, "--checkpoint", ckpt.string(), "--mode", mode, "--stride", "128", "--set",
                        "data.val_max_tokens=2049", "--nll-out", nll.string(), "--results", res.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("scored 2048/2048"), std::string::npos) << r.out;
    json j = json::parse(test::read_bytes(res));
    // Tiny embeddings and zero output projections: logits are ~0, so the loss is ln(1024).
    EXPECT_NEAR(j["val_loss"].get<double>(), std::log(1024.0), 2e-3);
    EXPECT_EQ(j["scored"], 2048);
    EXPECT_EQ(j["targets"], 2048);
    EXPECT_EQ(j["config"]["name"], "tiny");
    const double bpb = j["val_bpb"].get<double>(), loss = j["val_loss"].get<double>();
    EXPECT_NEAR(bpb, loss / std::log(2.0) * 2048.0 / j["bytes"].get<double>(), 1e-9);
    // The NLL file: one float64 per target, none missing, averaging to val_loss.
    std::string raw = test::read_bytes(nll);
    ASSERT_EQ(raw.size(), 2048u * 8);
    std::vector<double> v(2048);
    std::memcpy(v.data(), raw.data(), raw.size());
    double sum = 0;
    for (double x : v) {
      ASSERT_FALSE(std::isnan(x));
      sum += x;
    }
    EXPECT_NEAR(sum / 2048, loss, 1e-9);
  }
}

TEST(EvalCommand, MismatchesAreClearErrors) {
  test::TempDir dir;
  const auto ckpt = dir / "init.safetensors";
  ASSERT_EQ(run_pgolf({"init", "-c", kTiny, "-o", ckpt.string()}).exit_code, 0);
  // A checkpoint of another model: exit 3 naming the key its recorded model config differs in;
  // and when that is allowed, the shapes still cannot differ: exit 5, naming the file and the
  // first differences.
  auto r = run_pgolf({"eval", "-c", kTiny, "--set", "model.model_dim=64", "--checkpoint", ckpt.string(), "--set",
                      "data.val_max_tokens=1025"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("model.model_dim = 128 in the checkpoint, 64 in the config"), std::string::npos) << r.err;
  r = run_pgolf({"eval", "-c", kTiny, "--set", "model.model_dim=64", "--checkpoint", ckpt.string(), "--set",
                 "data.val_max_tokens=1025", "--allow-config-mismatch"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find(ckpt.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tok_emb.weight"), std::string::npos) << r.err;
  // The tokenizer's vocab must equal the config's (SPEC 2.2): exit 3 naming model.vocab_size.
  r = run_pgolf({"eval", "-c", kTiny, "--set", "model.vocab_size=2048", "--checkpoint", ckpt.string()});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("model.vocab_size"), std::string::npos) << r.err;
  // A GPU backend that this build or machine cannot provide: exit 7 naming why. (On a
  // machine with a GPU and a CUDA build the same command simply runs there.)
  if (run_pgolf({"--version"}).out.find("\ngpu 0: ") == std::string::npos) {
    r = run_pgolf({"eval", "-c", kTiny, "--set", "backend=cuda", "--checkpoint", ckpt.string()});
    EXPECT_EQ(r.exit_code, 7) << r.err;
    EXPECT_NE(r.err.find("backend: the config asks for \"cuda\", but "), std::string::npos) << r.err;
  }
}

TEST(BenchCommand, ReportsThroughput) {
  auto r = run_pgolf({"bench", "-c", kTiny, "--batch", "2", "--steps", "1", "--warmup", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("forward+backward"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("activation arena"), std::string::npos) << "the arena table is printed at start-up";
}

// --phases picks what is timed, in order; --results writes every figure; --profile on a
// backend that cannot time its ops says so instead of printing an empty table.
TEST(BenchCommand, PhasesResultsAndProfileAsAsked) {
  test::TempDir dir;
  const fs::path results = dir / "bench.json";
  auto r = run_pgolf({"bench", "-c", kTiny, "--set", "backend=cpu", "--batch", "1", "--steps", "1", "--warmup", "0",
                      "--phases", "step,forward", "--profile", "--results", results.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("forward+backward"), std::string::npos) << r.out;
  ASSERT_NE(r.out.find("training step"), std::string::npos) << r.out;
  ASSERT_NE(r.out.find("  forward "), std::string::npos) << r.out;
  EXPECT_LT(r.out.find("training step"), r.out.find("  forward ")) << "in the order asked";
  EXPECT_NE(r.out.find("(no per-op timing on backend cpu (float32))"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak memory"), std::string::npos) << r.out;
  const json j = json::parse(test::read_bytes(results));
  ASSERT_EQ(j["phases"].size(), 2u);
  EXPECT_EQ(j["phases"][0]["phase"], "step");
  EXPECT_EQ(j["phases"][1]["phase"], "forward");
  EXPECT_GT(j["phases"][0]["tokens_per_s"].get<double>(), 0.0);
  EXPECT_FALSE(j["phases"][0].contains("mfu")) << "no MFU without a profile";
  EXPECT_EQ(j["tokens_per_step"], 256.0);
  EXPECT_GT(j["peak_memory_bytes"].get<double>(), 1e6);
  EXPECT_EQ(j["backend"], "cpu (float32)");
  r = run_pgolf({"bench", "-c", kTiny, "--phases", "backward"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("backward"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pgolf

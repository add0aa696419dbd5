// pgolf pack / inspect artifact / eval --artifact through the binary, on the tiny config.
#include <gtest/gtest.h>

#include "common/json.hpp"
#include "config/config_loader.hpp"
#include "export/artifact.hpp"
#include "export/pack.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using test::run_pgolf;

const std::string kTiny = (test::source_dir() / "configs/tiny.json").string();

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// A checkpoint with every tensor non-trivial (the init zeroes several projections).
fs::path make_checkpoint(const test::TempDir& dir) {
  const fs::path ckpt = dir / "model.safetensors";
  const config::Config c = config::load_config(fs::path(kTiny), {}).config;
  const model::ParamTable table(c.model);
  std::vector<float> w;
  model::init_params(table, 1, w);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] += 0.01f * static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.005f;
  model::save_checkpoint(ckpt, table, w, {});
  return ckpt;
}

TEST(PackCommand, PacksInspectsAndEvaluatesExactlyTheDequantisedWeights) {
  test::TempDir dir;
  const fs::path ckpt = make_checkpoint(dir), art = dir / "a.pgolf", report = dir / "pack.json";
  auto p = run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", art.string(), "--results", report.string()});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_TRUE(contains(p.out, "budget 16,000,000: fits")) << p.out;
  EXPECT_TRUE(contains(p.out, "int6 24 tensors")) << p.out;
  const json rep = json::parse(test::read_bytes(report));
  EXPECT_EQ(rep["export"]["artifact_bytes"].get<std::uint64_t>(), fs::file_size(art));

  auto i = run_pgolf({"inspect", "artifact", art.string()});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  EXPECT_TRUE(contains(i.out, "within the challenge's 16,000,000")) << i.out;
  EXPECT_TRUE(contains(i.out, "blocks.3.mlp.proj.weight")) << i.out;
  EXPECT_TRUE(contains(i.out, "code bundle: ")) << i.out;

  // eval --artifact scores exactly what the artifact restores: the same numbers as a
  // checkpoint of the dequantised weights.
  const config::Config c = config::load_config(fs::path(kTiny), {}).config;
  const model::ParamTable table(c.model);
  const exporter::Artifact a = exporter::read_artifact_file(art);
  const fs::path deq = dir / "dequantised.safetensors";
  model::save_checkpoint(deq, table, exporter::unpack_weights(a.container, table, art.string()), {});
  const std::vector<std::string> common = {"-c", kTiny, "--set", "data.val_max_tokens=2049", "--mode", "nonoverlap"};
  auto with = [&](std::vector<std::string> a0, const std::vector<std::string>& more) {
    a0.insert(a0.end(), more.begin(), more.end());
    return a0;
  };
  auto ea = run_pgolf(with({"eval", "--artifact", art.string(), "--results", (dir / "ea.json").string()}, common));
  auto ec = run_pgolf(with({"eval", "--checkpoint", deq.string(), "--results", (dir / "ec.json").string()}, common));
  ASSERT_EQ(ea.exit_code, 0) << ea.err;
  ASSERT_EQ(ec.exit_code, 0) << ec.err;
  const json ja = json::parse(test::read_bytes(dir / "ea.json")), jc = json::parse(test::read_bytes(dir / "ec.json"));
  EXPECT_EQ(ja["val_loss"].get<double>(), jc["val_loss"].get<double>());
  EXPECT_EQ(ja["artifact"], art.string());

  // The code bundle unpacks to the sources it was made from.
  const fs::path code = dir / "code";
  auto x = run_pgolf({"inspect", "artifact", art.string(), "--extract-code", code.string()});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  for (const char* f : {"CMakeLists.txt", "src/export/pack.cpp", "src/cli/main.cpp"})
    EXPECT_EQ(test::read_bytes(code / "pgolf" / f), test::read_bytes(test::source_dir() / f)) << f;
  EXPECT_EQ(run_pgolf({"inspect", "artifact", art.string(), "--extract-code", code.string()}).exit_code, 2)
      << "refuses to write into a non-empty directory";
}

TEST(PackCommand, OverTheBudgetFailsWithExit9AndWritesNothing) {
  test::TempDir dir;
  const fs::path ckpt = make_checkpoint(dir), art = dir / "a.pgolf", fits = dir / "fits.pgolf";
  const std::vector<std::string> fast = {"--set", "export.lzma_preset=1"};
  auto args = [&](const fs::path& out, std::vector<std::string> more) {
    std::vector<std::string> a = {"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", out.string()};
    a.insert(a.end(), fast.begin(), fast.end());
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  ASSERT_EQ(run_pgolf(args(fits, {})).exit_code, 0);
  const auto size = fs::file_size(fits);
  const std::string budget = std::to_string(size - size / 50);  // 2% too small
  auto p = run_pgolf(args(art, {"--set", "export.budget_bytes=" + budget}));
  EXPECT_EQ(p.exit_code, 9) << p.err;
  EXPECT_TRUE(contains(p.err, "over export.budget_bytes")) << p.err;
  EXPECT_TRUE(contains(p.err, "export.prune_to_budget")) << p.err;
  EXPECT_FALSE(fs::exists(art));
  // With pruning it fits, zeroing some +-1 entries.
  auto q = run_pgolf(args(art, {"--set", "export.budget_bytes=" + budget, "--set", "export.prune_to_budget=true"}));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_LE(fs::file_size(art), std::stoull(budget));
  EXPECT_TRUE(contains(q.out, "pruned ")) << q.out;
}

TEST(PackCommand, DamagedArtifactsAndMismatchedConfigsAreClearErrors) {
  test::TempDir dir;
  const fs::path ckpt = make_checkpoint(dir), art = dir / "a.pgolf";
  ASSERT_EQ(run_pgolf({"pack", "-c", kTiny, "--checkpoint", ckpt.string(), "-o", art.string(), "--set",
                       "export.count_code=false"})
                .exit_code,
            0);
  const std::string bytes = test::read_bytes(art);
  const fs::path cut = dir / "cut.pgolf", flipped = dir / "flipped.pgolf";
  test::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  std::string f = bytes;
  f[f.size() / 3] = static_cast<char>(f[f.size() / 3] ^ 0x10);
  test::write_bytes(flipped, f);
  for (const auto& bad : {cut, flipped}) {
    auto i = run_pgolf({"inspect", "artifact", bad.string()});
    EXPECT_EQ(i.exit_code, 5) << i.err;
    EXPECT_TRUE(contains(i.err, bad.string())) << i.err;
    auto e = run_pgolf({"eval", "-c", kTiny, "--artifact", bad.string()});
    EXPECT_EQ(e.exit_code, 5) << e.err;
  }
  auto m = run_pgolf({"eval", "-c", kTiny, "--artifact", art.string(), "--set", "model.num_layers=6"});
  EXPECT_EQ(m.exit_code, 3) << m.err;
  EXPECT_TRUE(contains(m.err, "model.num_layers")) << m.err;
  auto none = run_pgolf({"eval", "-c", kTiny});
  EXPECT_EQ(none.exit_code, 2) << none.err;
  EXPECT_TRUE(contains(none.err, "--artifact")) << none.err;
}

}  // namespace
}  // namespace pgolf

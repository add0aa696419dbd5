// Checkpoints move both ways between pgolf and the PyTorch twin (tests/reference/
// make_interchange.sh made the goldens): a checkpoint the twin wrote evaluates in pgolf to
// the twin's loss, and a checkpoint pgolf wrote evaluates in the twin to pgolf's loss. The
// twin's numbers are float64; pgolf evaluates in float32, so agreement is to fp32 precision
// of a mean over 4096 targets: 1e-5 relative (observed: below 1e-6).
#include <gtest/gtest.h>

#include "common/json.hpp"
#include "config/config_loader.hpp"
#include "model/model_fixtures.hpp"
#include "model/params.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

const std::filesystem::path kGolden = test::source_dir() / "tests/reference/golden";

// The golden's cases: name -> (pgolf mode, extra --set values, targets scored).
struct Case {
  const char* name;
  const char* mode;
  std::vector<std::string> sets;
  int scored;
};
const Case kCases[] = {
    {"nonoverlap", "nonoverlap", {}, 4096},
    {"sliding", "sliding", {}, 4096},
    // 4099 targets: the last windows are shorter than seq_len and score only the leftovers.
    {"sliding_untrimmed_4100", "sliding", {"data.val_max_tokens=4100", "data.trim_val=false"}, 4099},
};

double pgolf_eval(const std::filesystem::path& checkpoint, const Case& c) {
  test::TempDir dir;
  std::vector<std::string> args = {"eval", "-c", (kGolden / "interchange.json").string(), "--checkpoint",
                                   checkpoint.string(), "--mode", c.mode, "--results", (dir / "r.json").string()};
  for (const auto& s : c.sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  auto r = test::run_pgolf(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(test::read_bytes(dir / "r.json"));
  EXPECT_EQ(j["scored"], c.scored);
  return j["val_loss"].get<double>();
}

TEST(Interchange, ATwinCheckpointEvaluatesInPgolfToTheTwinsLoss) {
  json expected = json::parse(test::read_bytes(kGolden / "interchange_v1.json"));
  for (const Case& c : kCases) {
    const double twin = expected["twin"][c.name].get<double>();
    const double ours = pgolf_eval(kGolden / "interchange_twin_v1.safetensors", c);
    EXPECT_NEAR(ours, twin, 1e-5 * twin) << c.name;
  }
}

TEST(Interchange, APgolfCheckpointEvaluatesInTheTwinToPgolfsLoss) {
  // The committed file is exactly what pgolf writes for these random parameters...
  test::TempDir dir;
  const auto config = config::load_config(kGolden / "interchange.json", {}).config;
  model::ParamTable table(config.model);
  auto p = test::random_params(table, 21);
  model::save_checkpoint(dir / "pgolf.safetensors", table, std::vector<float>(p.begin(), p.end()),
                         {{"format", "pgolf-params-v1"}, {"seed", "21"}});
  ASSERT_EQ(test::read_bytes(dir / "pgolf.safetensors"), test::read_bytes(kGolden / "interchange_pgolf_v1.safetensors"))
      << "pgolf's checkpoint writer or random_params changed: rerun tests/reference/make_interchange.sh";
  // ...and the twin's evaluation of it (committed) matches pgolf's.
  json expected = json::parse(test::read_bytes(kGolden / "interchange_v1.json"));
  for (const Case& c : kCases) {
    const double twin = expected["pgolf"][c.name].get<double>();
    const double ours = pgolf_eval(kGolden / "interchange_pgolf_v1.safetensors", c);
    EXPECT_NEAR(ours, twin, 1e-5 * twin) << c.name;
  }
}

}  // namespace
}  // namespace pgolf

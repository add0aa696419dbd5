// Test tool: writes a pgolf checkpoint of random parameters (tests/model/model_fixtures.hpp)
// for a config, so the PyTorch twin can evaluate a checkpoint that pgolf wrote
// (tests/reference/make_interchange.sh). Usage: write_random_checkpoint CONFIG SEED OUT
#include <cstdio>
#include <cstdlib>

#include "common/error.hpp"
#include "config/config_loader.hpp"
#include "model/model_fixtures.hpp"
#include "model/params.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s CONFIG SEED OUT.safetensors\n", argv[0]);
    return 2;
  }
  try {
    auto c = pgolf::config::load_config(std::filesystem::path(argv[1]), {}).config;
    pgolf::model::ParamTable table(c.model);
    auto p = pgolf::test::random_params(table, std::strtoull(argv[2], nullptr, 10));
    std::vector<float> values(p.begin(), p.end());
    pgolf::model::save_checkpoint(argv[3], table, values, {{"format", "pgolf-params-v1"}, {"seed", argv[2]}});
  } catch (const pgolf::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

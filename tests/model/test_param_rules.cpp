// The parameter table's classifications, read by training (late QAT), export (SPEC 5.1) and
// evaluation (TTT freezing) from one place: each tensor knows its block, QAT covers exactly
// what its scope names, and TTT freezes exactly the leading blocks.
#include <gtest/gtest.h>

#include <string>

#include "model/model_fixtures.hpp"
#include "model/params.hpp"

namespace pgolf::model {
namespace {

TEST(ParamRules, EveryBlockTensorKnowsItsBlockAndNoOtherTensorHasOne) {
  const ParamTable table(test::small_base());
  int block_tensors = 0;
  for (const auto& p : table.specs()) {
    SCOPED_TRACE(p.name);
    if (p.name.starts_with("blocks.")) {
      ++block_tensors;
      const std::string prefix = "blocks." + std::to_string(p.block) + ".";
      EXPECT_TRUE(p.name.starts_with(prefix));
    } else {
      EXPECT_EQ(p.block, -1);
    }
  }
  EXPECT_GT(block_tensors, 0);
}

TEST(ParamRules, QatCoversTheInt6TensorsOrTheRecordsTwoProjections) {
  const config::ModelConfig m = test::small_base();
  const ParamTable table(m);
  const std::int64_t passthrough = 256;
  int all_int6 = 0, record = 0;
  for (const auto& p : table.specs()) {
    SCOPED_TRACE(p.name);
    const bool int6 = quant_class(p.name, p.numel(), passthrough) == QuantClass::int6;
    EXPECT_EQ(qat_covers(p, config::QatScope::all_int6, passthrough), int6);
    const bool projection = p.name == "bigram.proj.weight" || p.name == "ve_shared.proj.weight";
    EXPECT_EQ(qat_covers(p, config::QatScope::record_small_projections, passthrough), projection);
    all_int6 += int6 ? 1 : 0;
    record += projection ? 1 : 0;
  }
  EXPECT_GT(all_int6, 0);
  EXPECT_GT(record, 0) << "the fixture should have a bigram or value-embedding projection";
}

TEST(ParamRules, TttFreezesExactlyTheLeadingBlocks) {
  const config::ModelConfig m = test::small_base();
  const ParamTable table(m);
  for (std::int64_t freeze : {std::int64_t{0}, std::int64_t{1}, m.num_layers}) {
    for (const auto& p : table.specs()) {
      SCOPED_TRACE(p.name + " freeze_blocks=" + std::to_string(freeze));
      bool frozen = false;
      for (std::int64_t i = 0; i < freeze; ++i) frozen = frozen || p.name.starts_with("blocks." + std::to_string(i) + ".");
      EXPECT_EQ(ttt_trainable(p, freeze), !frozen);
    }
  }
}

}  // namespace
}  // namespace pgolf::model

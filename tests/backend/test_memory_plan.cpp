// Memory plans (issue 12, item 5): what a command plans is what it then allocates, to the byte,
// so a refusal is never a guess; and a plan larger than the memory available is refused naming
// the knobs that size it.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/memory.hpp"
#include "common/error.hpp"
#include "config/config_loader.hpp"
#include "data/bpb.hpp"
#include "dist/communicator.hpp"
#include "eval/evaluator.hpp"
#include "export/pack.hpp"
#include "model/model.hpp"
#include "optim/optimizer.hpp"
#include "support/test_support.hpp"
#include "train/trainer.hpp"

namespace pgolf {
namespace {

const std::string kTiny = (test::source_dir() / "configs/tiny.json").string();

config::Config tiny(std::vector<std::string> sets) {
  sets.push_back("data.val_max_tokens=1025");
  sets.push_back("train.batch_tokens=1024");
  return config::load_config(fs::path(kTiny), sets).config;
}

TEST(MemoryPlan, TheModelPlanIsWhatTheModelAllocates) {
  const config::Config c = tiny({});
  for (const auto mode : {model::ModelMode::training, model::ModelMode::inference}) {
    backend::CpuOps<float> ops;
    const model::ModelFootprint f = model::Model<float>::plan(c.model, ops, 3, 256, mode);
    EXPECT_EQ(ops.live_bytes(), 0u) << "planning allocates nothing";
    model::Model<float> net(c.model, ops, 3, 256, mode);
    EXPECT_EQ(ops.live_bytes(), f.params + f.grads + f.tables + f.arena);
    EXPECT_EQ(f.params, net.table().total() * sizeof(float));
    EXPECT_EQ(f.arena, net.arena().bytes());
  }
}

TEST(MemoryPlan, TheOptimizerPlanIsWhatTheOptimizerAllocates) {
  const config::Config c = tiny({});
  backend::CpuOps<float> ops;
  const model::ParamTable table(c.model);
  optim::Optimizer<float> opt(table, c.optim, c.model.tie_embeddings, ops);
  EXPECT_EQ(ops.live_bytes(), optim::Optimizer<float>::planned_bytes(table));
}

// The trainer's plan covers its own allocations (the training model for one micro-batch, the
// validation model reading its weights) and the final evaluation's model with its TTT momentum
// and SLOT head, measured as the peak through construction and a TTT + causal SLOT eval on the
// evaluation's own model.
TEST(MemoryPlan, TheTrainerPlanIsThePeakOfTrainingAndTheFinalEvaluation) {
  const config::Config c = tiny({"eval.ttt.enabled=true", "eval.slot.variant=causal", "eval.ttt.chunk_tokens=512",
                                 "eval.stride=128"});
  ASSERT_TRUE(c.train.ema.enabled && c.train.swa.enabled && c.train.qat.enabled);
  backend::CpuOps<float> ops;
  dist::LocalCommunicator comm;
  const backend::MemoryPlan plan = train::Trainer::memory_plan(c, ops, 1);
  EXPECT_EQ(plan.parts().back().name, "final evaluation") << plan.summary();
  const std::uint64_t final_eval = plan.parts().back().bytes;
  eval::EvalOptions o = eval::eval_options(c);
  o.progress = false;
  EXPECT_EQ(final_eval, eval::eval_memory_plan(c.model, ops, o).total());
  EXPECT_GT(eval::eval_extra_bytes(c.model, o), 0u);
  train::Trainer trainer(c, comm, ops, train::RunPaths{});
  trainer.init_weights(1);
  EXPECT_EQ(ops.live_bytes(), plan.total() - final_eval) << plan.summary();
  const train::Trainer::BatchSplit split = train::Trainer::batch_split(c, 1);
  EXPECT_EQ(trainer.model().max_batch(), split.micro_seqs) << "the training model is not sized by eval knobs";
  const eval::ValStream stream = eval::load_val_stream(c);
  {
    const auto net = eval::make_eval_model(c.model, ops, o, trainer.model().recurrence_active());
    net->set_params(trainer.export_weights());
    eval::evaluate(*net, stream, trainer.byte_tables(), o);
  }
  EXPECT_EQ(ops.peak_bytes(), plan.total()) << plan.summary();
  // Validation (the inference model beside the training one) allocates nothing more.
  trainer.validate();
  EXPECT_EQ(ops.live_bytes(), plan.total() - final_eval) << plan.summary();
}

// With full GPTQ the calibration model and its Hessians come after training, beside it.
TEST(MemoryPlan, TheTrainerPlanCoversFullGptqCalibration) {
  // Few evaluation windows, so that calibration is the larger of the two.
  const config::Config c = tiny({"export.int6_method=gptq", "export.gptq.calibration_batches=6", "eval.batch_windows=2"});
  backend::CpuOps<float> ops;
  dist::LocalCommunicator comm;
  const backend::MemoryPlan plan =
      train::Trainer::memory_plan(c, ops, 1);
  EXPECT_EQ(plan.parts().back().name, "GPTQ calibration") << plan.summary();
  train::Trainer trainer(c, comm, ops, train::RunPaths{});
  trainer.init_weights(1);
  const std::vector<float> weights = trainer.export_weights();
  const exporter::Hessians h =
      exporter::calibrate(c, weights, ops, [&](std::int64_t n) { return trainer.take_train_tokens(n); }, nullptr);
  EXPECT_EQ(h.size(), 4u * 6u) << "c_q, c_k, c_v, proj, fc and mlp proj of 4 blocks";
  EXPECT_EQ(ops.peak_bytes(), plan.total()) << plan.summary();
}

TEST(MemoryPlan, APlanBeyondWhatIsAvailableIsAConfigErrorNamingTheKnobs) {
  backend::MemoryPlan plan;
  plan.add("parameters", 3000);
  plan.add("activations", 7000);
  plan.add("nothing", 0);
  EXPECT_EQ(plan.total(), 10000u);
  EXPECT_EQ(plan.parts().size(), 2u) << "empty parts are left out";
  const backend::MemoryInfo room{true, 10000, 20000, "test figures"};
  const std::string line = backend::check_memory_plan(plan, room, "host", "train.batch_tokens");
  EXPECT_NE(line.find("memory: parameters 2.93 KiB + activations 6.84 KiB = 9.77 KiB planned on host"), std::string::npos)
      << line;
  try {
    backend::check_memory_plan(plan, backend::MemoryInfo{true, 9999, 20000, "test figures"}, "host", "train.batch_tokens");
    FAIL() << "a plan one byte too large must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config);
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("train.batch_tokens: ", 0), 0u) << m;
    EXPECT_NE(m.find("10,000 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("9,999 bytes) are available (test figures)"), std::string::npos) << m;
  }
  // Unknown figures are said, not checked.
  EXPECT_NE(backend::check_memory_plan(plan, backend::MemoryInfo{}, "host", "x").find("unknown"), std::string::npos);
}

TEST(MemoryPlan, HostMemoryIsKnownOnLinux) {
  const backend::MemoryInfo info = backend::host_memory_info();
  ASSERT_TRUE(info.known);
  EXPECT_GT(info.available, 0u);
  EXPECT_LE(info.available, info.total);
  EXPECT_FALSE(info.source.empty());
}

}  // namespace
}  // namespace pgolf

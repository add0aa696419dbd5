// Whole runs through the CUDA code path: `pgolf-emu run` (pgolf_cuda_backend_tests) or `pgolf
// run` with backend cuda on a real GPU (pgolf_gpu_tests, PGOLF_TEST_REAL_GPU) — training,
// validation, export, the artifact round trip — against `pgolf run` on the CPU, and an
// evaluation with score-first TTT and causal SLOT on both backends. Tolerances as in
// test_cuda_backend.cpp (measured differences on the emulator are rounding: <= 2e-7 relative
// in the losses).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.hpp"
#include "common/json.hpp"
#include "eval/eval_fixture.hpp"
#include "support/test_support.hpp"

namespace pgolf::test {
namespace {

constexpr double kRelativeTolerance = 1e-5;

// The embedded default shrunk to a d32 model, 4 steps of 512 tokens and 1024 val targets:
// every stage of `pgolf run`, in under a minute on the emulator.
const std::vector<std::string> kMicroRun = {
    "--set", "model.model_dim=32",       "--set", "model.seq_len=64",          "--set", "model.rope.dims=4",
    "--set", "model.rope.train_len=32",  "--set", "model.bigram.vocab_size=64", "--set", "model.bigram.dim=8",
    "--set", "model.value_embed.dim=8",  "--set", "train.iterations=4",        "--set", "train.batch_tokens=512",
    "--set", "train.log_every=1",        "--set", "train.val_every=2",         "--set", "train.warmdown.iters=2",
    "--set", "train.swa.every=2",        "--set", "optim.muon.momentum_warmup_steps=2",
    "--set", "export.passthrough_max_numel=512", "--set", "eval.stride=64", "--set", "data.val_max_tokens=1025"};

// Runs `binary run` on the micro config with `backend` and returns results.json; checks that
// the backend in use is the one asked for (`expect_backend` in stderr).
json run_and_read_results(const fs::path& binary, const fs::path& out, const std::string& backend,
                          const std::string& expect_backend, const std::vector<std::string>& env) {
  std::vector<std::string> args = {"run", (source_dir() / "configs/tiny.json").string(), "--out", out.string(),
                                   "--source-dir", source_dir().string(), "--set", "backend=" + backend};
  args.insert(args.end(), kMicroRun.begin(), kMicroRun.end());
  const RunResult r = run_program(binary, args, env);
  EXPECT_EQ(r.exit_code, 0) << binary << "\n" << r.err;
  EXPECT_NE(r.err.find(expect_backend), std::string::npos) << r.err;
  return json::parse(read_bytes(out / "results.json"));
}

void expect_relatively_close(double a, double b, const std::string& what) {
  EXPECT_LE(std::fabs(a - b), kRelativeTolerance * std::fabs(b)) << what << ": " << a << " vs " << b;
}

TEST(CudaRun, TheWholePipelineThroughTheCudaBackendMatchesTheCpu) {
  TempDir dir;
  const json cpu = run_and_read_results(pgolf_binary(), dir / "cpu", "cpu", "backend: cpu reference", {});
#if PGOLF_TEST_REAL_GPU
  const json emu = run_and_read_results(pgolf_binary(), dir / "gpu", "cuda", "backend: cuda (" + backend::cuda_backend_info().device, {});
#else
  // A random thread schedule: any order-dependence in a kernel would show up as a difference.
  const json emu = run_and_read_results(PGOLF_EMU_BINARY, dir / "emu", "cuda",
                                        "backend: cuda (SIMT emulator on the host CPU, random schedule, seed 7)",
                                        {"PGOLF_EMU_SCHEDULE=random", "PGOLF_EMU_SEED=7"});
#endif
  ASSERT_EQ(emu["status"], "completed");
  ASSERT_EQ(emu["train_losses"].size(), 4u);
  // Capture-safe steps (issue 14): the training steps after the first neither synchronise with
  // the host nor allocate (their reads come after them, at the log lines); the CPU has nothing
  // to count.
  EXPECT_TRUE(cpu["device_stalls"].is_null()) << cpu["device_stalls"].dump();
  ASSERT_TRUE(emu["device_stalls"].is_object()) << emu.dump();
  EXPECT_GE(emu["device_stalls"]["steps_measured"].get<int>(), 1);
  EXPECT_EQ(emu["device_stalls"]["host_syncs_per_step"].get<double>(), 0.0) << emu["device_stalls"].dump();
  EXPECT_EQ(emu["device_stalls"]["device_allocations_per_step"].get<double>(), 0.0) << emu["device_stalls"].dump();
  for (std::size_t i = 0; i < 4; ++i)
    expect_relatively_close(emu["train_losses"][i]["loss"], cpu["train_losses"][i]["loss"], "train loss " + std::to_string(i));
  ASSERT_EQ(emu["validations"].size(), cpu["validations"].size());
  for (std::size_t i = 0; i < cpu["validations"].size(); ++i)
    expect_relatively_close(emu["validations"][i]["val_bpb"], cpu["validations"][i]["val_bpb"], "validation");
  expect_relatively_close(emu["final_eval"]["val_bpb"], cpu["final_eval"]["val_bpb"], "final val_bpb");
  expect_relatively_close(emu["roundtrip_eval"]["val_bpb"], cpu["roundtrip_eval"]["val_bpb"], "artifact val_bpb");
  std::printf("  val_bpb cpu %.9f, cuda %.9f; artifact %.9f vs %.9f\n", cpu["final_eval"]["val_bpb"].get<double>(),
              emu["final_eval"]["val_bpb"].get<double>(), cpu["roundtrip_eval"]["val_bpb"].get<double>(),
              emu["roundtrip_eval"]["val_bpb"].get<double>());
}

#if !PGOLF_TEST_REAL_GPU
TEST(EmulatedRun, VersionAndBackendLinesNameTheEmulator) {
  RunResult r = run_program(PGOLF_EMU_BINARY, {"--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cuda (SIMT emulator"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no GPU is used"), std::string::npos) << r.out;
  // backend "cpu" still selects the CPU reference in pgolf-emu.
  r = run_program(PGOLF_EMU_BINARY, {"bench", "-c", (source_dir() / "configs/tiny.json").string(), "--set", "backend=cpu",
                                     "--batch", "1", "--steps", "1", "--warmup", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("backend cpu (float32)"), std::string::npos) << r.out;
}

#endif

// Score-first TTT and causal SLOT run every op of the backend, including the SLOT-only ones
// (add_group_rows, sum_group_rows, scale_rows) and the TTT optimizer, on the model the eval
// goldens use.
TEST(CudaEval, TttAndCausalSlotMatchTheCpu) {
  const EvalFixture f = EvalFixture::golden({"data.val_max_tokens=401", "eval.ttt.enabled=true",
                                             "eval.ttt.chunk_tokens=192", "eval.ttt.epochs=1",
                                             "eval.slot.variant=causal", "eval.slot.steps=2"});
  const eval::EvalOptions o = f.options();
  const eval::EvalResult cpu = f.run(o);
  const auto cuda_ops = backend::make_cuda_ops();
  const eval::EvalResult cuda = f.run(o, cuda_ops.get());
  EXPECT_EQ(cuda.mode, "sliding+ttt+slot:causal");
  EXPECT_EQ(cuda.scored, 400);
  EXPECT_EQ(cuda.chunks, cpu.chunks);
  EXPECT_EQ(cuda.ttt_steps, cpu.ttt_steps);
  expect_relatively_close(cuda.val_bpb, cpu.val_bpb, "val_bpb");
  ASSERT_EQ(cuda.nll.size(), cpu.nll.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < cpu.nll.size(); ++i) {
    ASSERT_TRUE(std::isfinite(cuda.nll[i]) && std::isfinite(cpu.nll[i])) << "target " << i << " is not scored or not finite";
    worst = std::max(worst, std::fabs(cuda.nll[i] - cpu.nll[i]));
  }
  EXPECT_LE(worst, 1e-4);
  std::printf("  val_bpb cpu %.9f, cuda %.9f; worst per-token NLL difference %.2e\n", cpu.val_bpb,
              cuda.val_bpb, worst);
}

}  // namespace
}  // namespace pgolf::test

// The CUDA backend against the CPU reference through the op interface: the whole model's
// forward and backward for every option combination the record configs use, training steps
// with the optimizers, and evaluation with score-first TTT and causal SLOT. Built twice: as
// pgolf-emu runs it (pgolf_cuda_backend_tests: the kernels on the SIMT emulator, the runtime
// and cuBLASLt doubles) and, with PGOLF_TEST_REAL_GPU, on a real GPU (pgolf_gpu_tests, run by
// scripts/gpu_check.sh).
//
// Tolerances. The kernels match the CPU op by op bit for bit or within a few ulps
// (tests/kernels/*_parity.cpp); the matrix products differ in summation order (the
// cuBLASLt double sums in k order in float32, OpenBLAS in blocks, cuBLASLt on a GPU in tiles),
// so whole-model results differ by accumulated rounding. Measured on these cases (emulator):
// loss relative error <= 6e-8, per-position NLL <= 2e-6 absolute; gradients <= 3e-5 normalised
// error per tensor (the worst are scalar gains such as bigram.scale, whose gradient is a long
// sum with cancellation) and parameters after two optimizer steps <= 4e-5 (Adam's
// normalisation magnifies the difference of near-zero gradients). The thresholds are about 10x
// those, and far below what a wrong index, a missing term or a lost accumulation does (O(1)
// normalised error).
//
// The emulator's schedules: the same kernels must give bit-identical results whatever order
// the threads of a block run in (a race or a missing barrier usually does not).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "common/error.hpp"
#include "model/model.hpp"
#include "model/model_fixtures.hpp"
#include "optim/optimizer.hpp"
#include "train/device_step.hpp"

namespace pgolf::backend {
namespace {

constexpr double kLossTolerance = 1e-6;  // relative
constexpr double kNllTolerance = 2e-5;   // absolute, per position
constexpr double kGradTolerance = 3e-4;  // normalised: |a - b| / max(|b|, 1e-6) over a tensor

// ||a - b|| / max(||b||, floor); infinite when either holds a NaN or an Inf.
double normalised_error(const float* a, const float* b, std::size_t n) {
  double diff = 0.0, ref = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-6);
}

struct Pass {
  double loss = 0.0;
  std::vector<float> nll;
  std::vector<float> grads;
  std::vector<float> params_after;  // after two optimizer steps (Muon with Newton-Schulz, AdamW)
};

// Forward and backward of one model case on `ops`, then two optimizer steps.
Pass run_case(Ops<float>& ops, const test::ModelCase& mc) {
  const int batch = 2, seq = static_cast<int>(mc.model.seq_len);
  model::Model<float> net(mc.model, ops, batch, seq);
  net.set_recurrence_active(mc.recurrence_active);
  net.set_params(test::random_params(net.table(), 7));
  const auto ids = test::random_tokens(static_cast<std::size_t>(batch) * seq, static_cast<int>(mc.model.vocab_size), 8);
  const auto targets = test::random_tokens(ids.size(), static_cast<int>(mc.model.vocab_size), 9);
  net.zero_grads();
  Pass p;
  p.nll.resize(ids.size());
  p.loss = net.forward(ids.data(), targets.data(), batch, seq, p.nll.data());
  net.backward();
  p.grads = net.grads_host();
  optim::Optimizer<float> opt(net.table(), config::OptimConfig{}, mc.model.tie_embeddings, ops);
  opt.step(net.params(), net.grads(), 0, 1.0);
  opt.step(net.params(), net.grads(), 1, 0.5);
  p.params_after = net.params_host();
  return p;
}

#if PGOLF_TEST_REAL_GPU
std::unique_ptr<Ops<float>> cuda_backend() { return make_cuda_ops(); }
#else
// The emulated CUDA backend, made as pgolf-emu makes it (the schedule from the environment).
std::unique_ptr<Ops<float>> emulated(const char* schedule) {
  ::setenv("PGOLF_EMU_SCHEDULE", schedule, 1);
  ::setenv("PGOLF_EMU_SEED", "12345", 1);
  auto ops = make_cuda_ops();
  ::unsetenv("PGOLF_EMU_SCHEDULE");
  ::unsetenv("PGOLF_EMU_SEED");
  return ops;
}
std::unique_ptr<Ops<float>> cuda_backend() { return emulated("forward"); }
#endif

void expect_close(const Pass& cuda, const Pass& cpu, const model::ParamTable& table) {
  EXPECT_LE(std::fabs(cuda.loss - cpu.loss), kLossTolerance * std::fabs(cpu.loss)) << cuda.loss << " vs " << cpu.loss;
  double worst_nll = 0.0;
  for (std::size_t i = 0; i < cpu.nll.size(); ++i)
    worst_nll = std::max(worst_nll, std::isfinite(cuda.nll[i]) && std::isfinite(cpu.nll[i])
                                        ? std::fabs(static_cast<double>(cuda.nll[i]) - cpu.nll[i])
                                        : INFINITY);
  EXPECT_LE(worst_nll, kNllTolerance);
  double worst_grad = 0.0, worst_param = 0.0;
  std::string worst_grad_name, worst_param_name;
  for (const auto& spec : table.specs()) {
    const double g = normalised_error(cuda.grads.data() + spec.offset, cpu.grads.data() + spec.offset, spec.numel());
    const double w =
        normalised_error(cuda.params_after.data() + spec.offset, cpu.params_after.data() + spec.offset, spec.numel());
    EXPECT_LE(g, kGradTolerance) << "gradient of " << spec.name;
    EXPECT_LE(w, kGradTolerance) << "parameters after the optimizer steps, " << spec.name;
    if (g > worst_grad) worst_grad_name = spec.name;
    if (w > worst_param) worst_param_name = spec.name;
    worst_grad = std::max(worst_grad, g);
    worst_param = std::max(worst_param, w);
  }
  std::printf("  loss %.9g vs %.9g, worst NLL difference %.2e, worst gradient error %.2e (%s), worst parameter "
              "error %.2e (%s)\n",
              cuda.loss, cpu.loss, worst_nll, worst_grad, worst_grad_name.c_str(), worst_param,
              worst_param_name.c_str());
}

class CudaBackendModel : public ::testing::TestWithParam<test::ModelCase> {};

TEST_P(CudaBackendModel, ForwardBackwardAndOptimizerMatchTheCpuReference) {
  const test::ModelCase& mc = GetParam();
  CpuOps<float> cpu_ops;
  const Pass cpu = run_case(cpu_ops, mc);
  const auto cuda_ops = cuda_backend();
  const Pass cuda = run_case(*cuda_ops, mc);
  expect_close(cuda, cpu, model::ParamTable(mc.model));
}

#if !PGOLF_TEST_REAL_GPU

TEST_P(CudaBackendModel, ResultsDoNotDependOnTheThreadSchedule) {
  const test::ModelCase& mc = GetParam();
  const Pass forward = run_case(*emulated("forward"), mc);
  for (const char* schedule : {"reverse", "random"}) {
    const Pass other = run_case(*emulated(schedule), mc);
    EXPECT_EQ(other.loss, forward.loss) << schedule;
    EXPECT_EQ(other.nll, forward.nll) << schedule;
    EXPECT_EQ(other.grads, forward.grads) << schedule;
    EXPECT_EQ(other.params_after, forward.params_after) << schedule;
  }
}

#endif

INSTANTIATE_TEST_SUITE_P(AllCases, CudaBackendModel, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& param_info) { return param_info.param.name; });

#if PGOLF_TEST_REAL_GPU
TEST(CudaBackend, TheRealBackendRunsOnAHopperGpuAndSaysWhichOne) {
  const CudaBackendInfo& info = cuda_backend_info();
  EXPECT_TRUE(info.compiled);
  EXPECT_FALSE(info.emulated);
  ASSERT_TRUE(info.usable) << info.why_not;
  EXPECT_NE(info.device.find("(sm_90,"), std::string::npos) << info.device;
  EXPECT_NE(info.device.find(" SMs, "), std::string::npos) << info.device;
  EXPECT_NE(cuda_backend()->name().find(info.device), std::string::npos);
  std::printf("  %s\n", info.device.c_str());
}
#else

TEST(CudaBackend, TheEmulatedBackendIsAlwaysUsableAndSaysWhatItIs) {
  const CudaBackendInfo& info = cuda_backend_info();
  EXPECT_TRUE(info.compiled);
  EXPECT_TRUE(info.emulated);
  EXPECT_TRUE(info.usable);
  const auto ops = emulated("random");
  EXPECT_NE(ops->name().find("SIMT emulator"), std::string::npos) << ops->name();
  EXPECT_NE(ops->name().find("random schedule, seed 12345"), std::string::npos) << ops->name();
}

TEST(CudaBackend, AnUnknownScheduleIsAUsageErrorNamingTheVariable) {
  ::setenv("PGOLF_EMU_SCHEDULE", "backwards", 1);
  try {
    make_cuda_ops();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_NE(std::string(e.what()).find("PGOLF_EMU_SCHEDULE=backwards"), std::string::npos) << e.what();
  }
  ::setenv("PGOLF_EMU_SCHEDULE", "forward", 1);
  ::setenv("PGOLF_EMU_SEED", "-3", 1);
  EXPECT_THROW(make_cuda_ops(), Error);
  ::unsetenv("PGOLF_EMU_SCHEDULE");
  ::unsetenv("PGOLF_EMU_SEED");
}

#endif

TEST(CudaBackend, DeviceMemoryIsZeroedAndCopiesRoundTrip) {
  const auto ops = cuda_backend();
  constexpr std::size_t n = 1000;
  auto* d = static_cast<float*>(ops->allocate(n * sizeof(float)));
  std::vector<float> host(n, 1.0f);
  ops->to_host(host.data(), d, n * sizeof(float));
  EXPECT_EQ(host, std::vector<float>(n, 0.0f));  // allocate() zero-fills (the double poisons fresh memory)
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i) * 0.5f;
  ops->to_device(d, host.data(), n * sizeof(float));
  auto* e = static_cast<float*>(ops->allocate(n * sizeof(float)));
  ops->copy_values(e, d, n);
  ops->scale_values(e, 2.0f, n);
  EXPECT_DOUBLE_EQ(ops->sum_squares(e, n), [&] {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(i) * static_cast<double>(i);
    return s;
  }());
  std::vector<float> back(n);
  ops->to_host(back.data(), e, n * sizeof(float));
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], static_cast<float>(i)) << i;
  ops->release(d);
  ops->release(e);
}

// pgolf bench --profile: every op between device events, with the model FLOPs of the
// products; and the peak of the backend's allocations, its workspaces included.
TEST(CudaBackend, OpTimingCountsEveryOpAndTheProductsFlopsAndPeakBytesCountWorkspaces) {
  const auto ops = cuda_backend();
  const test::ModelCase mc = test::model_cases().front();
  const int batch = 2, seq = static_cast<int>(mc.model.seq_len);
  model::Model<float> net(mc.model, *ops, batch, seq);
  net.set_params(test::random_params(net.table(), 7));
  const auto ids = test::random_tokens(static_cast<std::size_t>(batch) * seq, static_cast<int>(mc.model.vocab_size), 8);
  const std::uint64_t before = ops->peak_bytes();
  EXPECT_GE(before, net.table().total() * sizeof(float) * 2) << "parameters and gradients at least";
  ASSERT_TRUE(ops->start_op_timing());
  net.zero_grads();
  net.forward(ids.data(), ids.data(), batch, seq);
  net.backward();
  const OpProfile profile = ops->stop_op_timing();
  EXPECT_GE(ops->peak_bytes(), before);
  const auto find = [&](const std::string& op) -> const OpTiming* {
    for (const OpTiming& t : profile.ops)
      if (t.op == op) return &t;
    return nullptr;
  };
  const int L = static_cast<int>(mc.model.num_layers), N = batch * seq;
  const OpTiming* attention = find("attention_forward");
  ASSERT_NE(attention, nullptr);
  EXPECT_GE(attention->calls, L);
  const double heads = static_cast<double>(mc.model.num_heads), hd = static_cast<double>(mc.model.model_dim) / heads;
  EXPECT_DOUBLE_EQ(attention->flops, static_cast<double>(attention->calls) * causal_attention_flops(batch, heads, seq, hd));
  const OpTiming* backward = find("attention_backward");
  ASSERT_NE(backward, nullptr);
  EXPECT_DOUBLE_EQ(backward->flops, 2.0 * attention->flops);
  ASSERT_NE(find("matmul_forward"), nullptr);
  ASSERT_NE(find("matmul_backward"), nullptr);
  // The head alone is N x d x V forward: the products' FLOPs are at least that.
  EXPECT_GE(find("matmul_forward")->flops,
            matmul_flops(N, static_cast<double>(mc.model.model_dim), static_cast<double>(mc.model.vocab_size)));
  for (const OpTiming& t : profile.ops) {
    EXPECT_GT(t.calls, 0) << t.op;
    EXPECT_GE(t.ms, 0.0) << t.op;
  }
  for (std::size_t i = 1; i < profile.ops.size(); ++i) EXPECT_GE(profile.ops[i - 1].ms, profile.ops[i].ms);
  EXPECT_GT(profile.total_ms(), 0.0);
  // Timing is off again: nothing more is recorded.
  net.forward(ids.data(), ids.data(), batch, seq);
  ASSERT_TRUE(ops->start_op_timing());
  EXPECT_TRUE(ops->stop_op_timing().ops.empty());
}

// The stalls the fast path must remove (issue 14), counted exactly: every copy between host
// and device and every synchronize() is a host sync, every allocation and release an
// allocation call; device-to-device work is neither.
TEST(CudaBackend, HostSyncsAndAllocationCallsAreCountedExactly) {
  const auto ops = cuda_backend();
  const auto start = ops->stall_counts();
  ASSERT_TRUE(start.has_value());
  float* d = static_cast<float*>(ops->allocate(64 * sizeof(float)));
  std::vector<float> host(64, 2.0f);
  ops->to_device(d, host.data(), 64 * sizeof(float));
  ops->scale_values(d, 0.5f, 64);
  ops->copy(d, d + 32, 32 * sizeof(float));
  ops->to_host(host.data(), d, 64 * sizeof(float));
  ops->synchronize();
  EXPECT_DOUBLE_EQ(ops->sum_squares(d, 64), 64.0);  // its result comes back to the host: one sync
  ops->release(d);
  const auto end = ops->stall_counts();
  // sum_squares allocated its one-double workspace once (1 call) and copied it back (1 sync).
  EXPECT_EQ(end->host_syncs - start->host_syncs, 4u);
  EXPECT_EQ(end->allocation_calls - start->allocation_calls, 3u);
  EXPECT_FALSE(CpuOps<float>().stall_counts().has_value()) << "the CPU backend has nothing to stall";
}

// Capture-safe training steps (issue 14): from the first step (the model and the optimizer
// reserved their op workspaces and pinned staging when they were built), a whole training step
// as the trainer issues it (staged constants and batches, forward, backward, the device-side
// guard and clipping, Muon and AdamW, EMA) neither synchronises with the host nor allocates;
// one read afterwards brings back every step's loss and gradient norm, and they match the CPU's.
TEST(CudaBackend, ATrainingStepNeitherSyncsNorAllocatesAndOneReadReturnsEveryStep) {
  const test::ModelCase mc = test::model_cases().front();
  const int batch = 2, seq = static_cast<int>(mc.model.seq_len), steps = 3;
  const auto ids = test::random_tokens(static_cast<std::size_t>(batch) * seq, static_cast<int>(mc.model.vocab_size), 8);
  const auto targets = test::random_tokens(ids.size(), static_cast<int>(mc.model.vocab_size), 9);
  auto train = [&](Ops<float>& ops, Device::StallCounts* stalls) {
    model::Model<float> net(mc.model, ops, batch, seq);
    net.set_params(test::random_params(net.table(), 7));
    const std::size_t n = net.table().total();
    optim::Optimizer<float> opt(net.table(), config::OptimConfig{}, mc.model.tie_embeddings, ops);
    train::DeviceStep device_step(ops, steps);
    DeviceBuffer<float> ema(ops, n), decay(ops, 2);
    const std::vector<float> d = {0.99f, 0.01f};
    ops.to_device(decay.get(), d.data(), d.size() * sizeof(float));
    const std::optional<Device::StallCounts> before = ops.stall_counts();
    for (int s = 0; s < steps; ++s) {
      opt.stage_constants(s, 1.0);
      device_step.begin(static_cast<std::size_t>(s));
      net.zero_grads();
      net.forward_backward(ids.data(), targets.data(), batch, seq);
      device_step.add_loss(static_cast<std::size_t>(s), net.loss_sum(), static_cast<double>(ids.size()));
      device_step.guard_and_clip(static_cast<std::size_t>(s), net.grads(), n, 0.3);
      opt.apply(net.params(), net.grads(), device_step.skip());
      ops.axpby_step(ema.get(), net.params(), decay.get(), n, device_step.skip());
    }
    if (stalls != nullptr) {
      const auto after = ops.stall_counts();
      *stalls = {after->host_syncs - before->host_syncs, after->allocation_calls - before->allocation_calls,
                 after->staging_waits - before->staging_waits};
    }
    return device_step.read(steps);
  };
  const auto ops = cuda_backend();
  Device::StallCounts stalls;
  const auto got = train(*ops, &stalls);
  EXPECT_EQ(stalls.host_syncs, 0u) << "host syncs in the first " << steps << " training steps";
  EXPECT_EQ(stalls.allocation_calls, 0u) << "device allocations in the first " << steps << " training steps";
  CpuOps<float> cpu;
  const auto want = train(cpu, nullptr);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(std::fabs(got[i].loss_sum - want[i].loss_sum), kLossTolerance * want[i].loss_sum) << "step " << i;
    EXPECT_LE(std::fabs(std::sqrt(got[i].sum_squares) - std::sqrt(want[i].sum_squares)),
              kGradTolerance * std::sqrt(want[i].sum_squares))
        << "step " << i;
    EXPECT_GT(want[i].sum_squares, 0.0);
  }
  EXPECT_NE(got.front().loss_sum, got.back().loss_sum) << "the steps trained";
}

#if !PGOLF_TEST_REAL_GPU
TEST(CudaBackend, AHostPointerWhereDeviceMemoryBelongsIsCaught) {
  // The mistake a CPU-only test suite can never see: passing host memory as a device pointer.
  const auto ops = emulated("forward");
  std::vector<float> host(16, 1.0f), out(16);
  EXPECT_THROW(ops->to_host(out.data(), host.data(), 16 * sizeof(float)), std::exception);
  auto* d = static_cast<float*>(ops->allocate(16 * sizeof(float)));
  EXPECT_THROW(ops->to_host(out.data(), d, 17 * sizeof(float)), std::exception);  // past the allocation's end
  // And the other way round: host code reading a device pointer, which works on the CPU
  // backend and crashes (or reads garbage) on a GPU, dies here naming the allocation. The
  // whole-run test (test_cuda_backend_runs.cpp) thereby checks that no host code in the
  // pipeline does it.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        volatile float x = d[3];
        (void)x;
      },
      "host code accessed device memory at byte offset 12 of allocation");
  ops->release(d);
}
#endif

}  // namespace
}  // namespace pgolf::backend

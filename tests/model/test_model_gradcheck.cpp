// The whole model's backward against finite differences of its forward, in double precision,
// for every option combination the record configs use (model_fixtures.hpp). For each
// parameter tensor a few elements are checked (all of them for tensors of up to 8 values).
//
// Step and threshold: LeakyReLU(0.5)^2 has a jump in its second derivative at 0, and with
// thousands of MLP pre-activations some stencil always straddles it. Measured on these
// cases with h = 1e-3: worst relative error 1.5e-5 (2e-10 when the slope is set to 1, i.e.
// without the kink); with h = 1e-4: 3.7e-6 for one element and below 6e-7 for all others.
// So h = 1e-4 and a threshold of 2e-5, relative to max(|analytic|, |numeric|, 1e-3): every
// gradient above 1e-3 is checked relatively, and the threshold is still far below what a
// missing or mis-signed term does (O(1) relative; even dropping softcap's 1 - tanh^2 factor
// at cap 30 is a 1e-3 error).
#include <gtest/gtest.h>

#include "backend/cpu/cpu_ops.hpp"
#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/model.hpp"
#include "model/model_fixtures.hpp"
#include "support/gradcheck.hpp"

namespace pgolf::model {
namespace {

constexpr double kModelTolerance = 2e-5;
constexpr double kModelFloor = 1e-3;
constexpr double kModelStep = 1e-4;

class ModelGradcheck : public ::testing::TestWithParam<test::ModelCase> {};

TEST_P(ModelGradcheck, AnalyticGradientsMatchFiniteDifferences) {
  const test::ModelCase& mc = GetParam();
  backend::CpuOps<double> ops;
  const int batch = 2, seq = static_cast<int>(mc.model.seq_len);
  Model<double> model(mc.model, ops, batch, seq);
  model.set_recurrence_active(mc.recurrence_active);
  std::vector<double> params = test::random_params(model.table(), 7);
  auto ids = test::random_tokens(static_cast<std::size_t>(batch) * seq, static_cast<int>(mc.model.vocab_size), 8);
  auto targets = test::random_tokens(ids.size(), static_cast<int>(mc.model.vocab_size), 9);

  model.set_params(params);
  model.zero_grads();
  model.forward(ids.data(), targets.data(), batch, seq);
  model.backward();
  const std::vector<double> grads = model.grads_host();

  auto loss = [&] {
    model.set_params(params);
    return model.forward(ids.data(), targets.data(), batch, seq);
  };
  std::size_t nonzero = 0;
  for (const auto& p : model.table().specs()) {
    const std::size_t n = p.numel();
    const std::size_t samples = n <= 8 ? n : 4;
    double worst = 0.0;
    std::size_t worst_i = 0;
    double worst_a = 0, worst_n = 0;
    for (std::size_t k = 0; k < samples; ++k) {
      const std::size_t i = p.offset + (samples == n ? k : (k * 7919 + 3) % n);
      const double num = test::numeric_derivative(params, i, loss, kModelStep);
      const double err = test::relative_error(grads[i], num, kModelFloor);
      nonzero += std::fabs(num) > 1e-9;
      if (err >= worst) {
        worst = err;
        worst_i = i - p.offset;
        worst_a = grads[i];
        worst_n = num;
      }
    }
    EXPECT_LT(worst, kModelTolerance) << mc.name << ": " << p.name << "[" << worst_i << "] analytic " << worst_a
                                      << " numeric " << worst_n;
  }
  EXPECT_GT(nonzero, model.table().specs().size()) << "most checked derivatives must be non-zero to mean anything";
}

INSTANTIATE_TEST_SUITE_P(AllOptionCombinations, ModelGradcheck, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

TEST(ModelBackward, ParameterGradientsAccumulateAcrossCalls) {
  const test::ModelCase mc = test::model_cases()[1];
  backend::CpuOps<double> ops;
  Model<double> model(mc.model, ops, 2, 8);
  model.set_recurrence_active(true);
  model.set_params(test::random_params(model.table(), 3));
  auto ids = test::random_tokens(16, 64, 4), targets = test::random_tokens(16, 64, 5);
  model.zero_grads();
  model.forward(ids.data(), targets.data(), 2, 8);
  model.backward();
  auto once = model.grads_host();
  model.forward(ids.data(), targets.data(), 2, 8);
  model.backward();
  auto twice = model.grads_host();
  for (std::size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(twice[i], 2 * once[i], 1e-12 * (1 + std::fabs(once[i])));
}

TEST(ModelForward, IsBitDeterministicInFloat) {
  for (const auto& mc : test::model_cases()) {
    SCOPED_TRACE(mc.name);
    backend::CpuOps<float> ops;
    auto run = [&] {
      Model<float> model(mc.model, ops, 2, 8);
      model.set_recurrence_active(mc.recurrence_active);
      auto p = test::random_params(model.table(), 11);
      model.set_params(std::vector<float>(p.begin(), p.end()));
      auto ids = test::random_tokens(16, 64, 12), targets = test::random_tokens(16, 64, 13);
      model.zero_grads();
      double loss = model.forward(ids.data(), targets.data(), 2, 8);
      model.backward();
      return std::make_pair(loss, model.grads_host());
    };
    auto a = run(), b = run();
    EXPECT_EQ(a.first, b.first);
    EXPECT_EQ(a.second, b.second);
  }
}

TEST(ModelSchedule, FollowsTheUNetAndRecurrenceRules) {
  config::ModelConfig m;  // 11 layers, 5 encoder + 6 decoder, 5 skips
  auto steps = layer_schedule(m, false);
  ASSERT_EQ(steps.size(), 11u);
  for (int j = 0; j < 5; ++j) EXPECT_TRUE(steps[static_cast<std::size_t>(j)].encoder);
  for (int j = 0; j < 5; ++j) {
    EXPECT_EQ(steps[static_cast<std::size_t>(5 + j)].skip_source, 4 - j) << "last pushed, first popped";
    EXPECT_EQ(steps[static_cast<std::size_t>(5 + j)].skip_weight, j);
  }
  EXPECT_EQ(steps[10].skip_source, -1) << "the last decoder layer gets no skip";

  m.recurrence.virtual_layers = {0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 10};
  steps = layer_schedule(m, true);
  ASSERT_EQ(steps.size(), 13u);  // 6 encoder, 7 decoder steps
  EXPECT_EQ(steps[11].skip_source, 0);
  EXPECT_EQ(steps[11].skip_weight, 4) << "#1285: the skip index is clamped to n_skip - 1";
  EXPECT_EQ(steps[12].skip_source, -1);
  m.recurrence.skip_policy = config::RecurrenceSkip::none_beyond;
  steps = layer_schedule(m, true);
  EXPECT_EQ(steps[11].skip_source, -1) << "[record quirk] #1334: no skip for j >= n_skip";

  m.parallel_residual.start_layer = 7;
  steps = layer_schedule(m, true);
  for (std::size_t j = 0; j < steps.size(); ++j) {
    EXPECT_EQ(steps[j].split_here, steps[j].layer == 7 && j == 9) << j;
    EXPECT_EQ(steps[j].parallel, j >= 9) << j;
  }
}

}  // namespace
}  // namespace pgolf::model

namespace pgolf::model {
namespace {

// A shorter window is a prefix: causality, RoPE positions and the per-sequence resets of
// SmearGate and BigramHash must make the first rows independent of what follows.
TEST(ModelForward, ShortWindowsAndOtherBatchSizesGiveTheSameRows) {
  const test::ModelCase mc = test::model_cases()[1];  // all options, recurrence on
  backend::CpuOps<double> ops;
  Model<double> model(mc.model, ops, 2, 8);
  model.set_recurrence_active(true);
  model.set_params(test::random_params(model.table(), 17));
  auto ids = test::random_tokens(16, 64, 18), targets = test::random_tokens(16, 64, 19);
  model.forward(ids.data(), targets.data(), 2, 8);
  const auto full = model.logits_host();
  const std::size_t V = 64;
  // Sequence 1 alone, first 5 positions.
  model.forward(ids.data() + 8, targets.data() + 8, 1, 5);
  const auto part = model.logits_host();
  for (std::size_t i = 0; i < 5 * V; ++i) ASSERT_NEAR(part[i], full[8 * V + i], 1e-12) << i;
}

TEST(ModelForward, InferenceModeMatchesTrainingModeBitForBit) {
  for (const auto& mc : test::model_cases()) {
    SCOPED_TRACE(mc.name);
    backend::CpuOps<float> ops;
    auto p = test::random_params(ParamTable(mc.model), 23);
    auto ids = test::random_tokens(16, 64, 24), targets = test::random_tokens(16, 64, 25);
    std::vector<float> nll_train(16), nll_infer(16);
    Model<float> train(mc.model, ops, 2, 8);
    Model<float> infer(mc.model, ops, 2, 8, ModelMode::inference);
    for (Model<float>* m : {&train, &infer}) {
      m->set_recurrence_active(mc.recurrence_active);
      m->set_params(std::vector<float>(p.begin(), p.end()));
    }
    EXPECT_EQ(train.forward(ids.data(), targets.data(), 2, 8, nll_train.data()),
              infer.forward(ids.data(), targets.data(), 2, 8, nll_infer.data()));
    EXPECT_EQ(nll_train, nll_infer);
    EXPECT_LT(infer.arena().bytes(), train.arena().bytes() / 2) << "inference shares the sublayer buffers";
    EXPECT_THROW(infer.backward(), Error);
  }
}

TEST(CpuOpsThreads, OwnReductionsDoNotDependOnTheThreadCount) {
  backend::CpuOps<float> ops;
  const int n = 3000, dim = 70;
  std::vector<float> y(static_cast<std::size_t>(n) * dim), dout(y.size()), scale(dim, 0.5f);
  Rng rng(5);
  for (auto& v : y) v = static_cast<float>(rng.normal());
  for (auto& v : dout) v = static_cast<float>(rng.normal());
  auto run = [&](int threads) {
    backend::set_cpu_threads(threads);
    std::vector<float> dy(y.size()), dscale(dim, 0.0f);
    ops.residual_scale_backward(dy.data(), dscale.data(), dout.data(), y.data(), scale.data(), n, dim);
    return std::make_pair(dscale, ops.sum_squares(y.data(), y.size()));
  };
  const auto one = run(1), two = run(2);
  backend::set_cpu_threads(0);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.second, two.second);
}

}  // namespace
}  // namespace pgolf::model

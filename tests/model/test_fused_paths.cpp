// The fused op paths (backend/ops.hpp "fused ops"): a backend that offers a fused op computes
// exactly its composition, so the model's training path gives the same loss and gradients,
// bit for bit on the CPU, whichever path it takes; and the model takes the fused path exactly
// when the backend offers it. (Both fused ops: softcap_ce and qk_prep.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "common/error.hpp"
#include "model/model.hpp"
#include "model/model_fixtures.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(FusedOps, TheCpuFusedLossIsItsCompositionBitForBit) {
  backend::CpuOps<float> ops;
  ASSERT_TRUE(ops.supports(backend::FusedOp::softcap_ce));
  const int n = 5, vocab = 97;
  const float cap = 15.0f, scale = 0.125f;
  std::vector<float> z(static_cast<std::size_t>(n) * vocab);
  Rng rng(3);
  for (auto& v : z) v = static_cast<float>(8.0 * rng.normal());
  const std::vector<std::int32_t> targets = {0, 96, 13, 13, 50};

  std::vector<float> logits = z, nll(n), dz(z.size());
  float loss = 0;
  ops.softcap_ce_forward(logits.data(), nll.data(), &loss, targets.data(), n, vocab, cap);
  ops.softcap_ce_backward(dz.data(), logits.data(), targets.data(), n, vocab, cap, scale);

  std::vector<float> in_place = logits;  // the backward with dz = logits
  ops.softcap_ce_backward(in_place.data(), in_place.data(), targets.data(), n, vocab, cap, scale);
  EXPECT_TRUE(same_bits(in_place, dz)) << "softcap_ce_backward in place";

  std::vector<float> fused = z, fused_nll(n);
  float fused_loss = 0;
  ops.softcap_ce_fused(fused.data(), fused_nll.data(), &fused_loss, targets.data(), n, vocab, cap, scale);
  EXPECT_TRUE(same_bits(fused, dz)) << "the gradient";
  EXPECT_TRUE(same_bits(fused_nll, nll)) << "the row NLLs";
  EXPECT_EQ(std::memcmp(&fused_loss, &loss, sizeof loss), 0) << fused_loss << " vs " << loss;
}

// qk_prep on the CPU: its composition (rmsnorm per head, rope_apply, head_gain; and back)
// bit for bit, with a gain (queries) and without (keys), dx written over dout.
TEST(FusedOps, TheCpuQkPrepIsItsCompositionBitForBit) {
  backend::CpuOps<float> ops;
  ASSERT_TRUE(ops.supports(backend::FusedOp::qk_prep));
  const int rows = 6, seq = 3, heads = 4, hd = 8, rope_dims = 4, half = rope_dims / 2, n = rows * heads;
  const std::size_t total = static_cast<std::size_t>(n) * hd;
  Rng rng(9);
  auto values = [&](std::size_t count) {
    std::vector<float> v(count);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
  };
  const std::vector<float> x = values(total), dout = values(total), gain = values(heads), dgain0 = values(heads);
  std::vector<float> cosv(static_cast<std::size_t>(seq * half)), sinv(cosv.size());
  for (std::size_t i = 0; i < cosv.size(); ++i) {
    cosv[i] = std::cos(0.3f * static_cast<float>(i));
    sinv[i] = std::sin(0.3f * static_cast<float>(i));
  }
  for (bool with_gain : {true, false}) {
    SCOPED_TRACE(with_gain ? "with a gain" : "without a gain");
    std::vector<float> normed(total), rstd(static_cast<std::size_t>(n)), out(total), d(total), dx(total), dgain = dgain0;
    ops.rmsnorm_forward(normed.data(), rstd.data(), x.data(), n, hd, 1.0f);
    ops.rope_apply(normed.data(), cosv.data(), sinv.data(), rows, seq, heads, hd, rope_dims, false);
    if (with_gain) {
      ops.head_gain_forward(out.data(), normed.data(), gain.data(), rows, heads, hd);
      ops.head_gain_backward(d.data(), dgain.data(), dout.data(), normed.data(), gain.data(), rows, heads, hd);
    } else {
      d = dout;
    }
    ops.rope_apply(d.data(), cosv.data(), sinv.data(), rows, seq, heads, hd, rope_dims, true);
    ops.rmsnorm_backward(dx.data(), d.data(), x.data(), rstd.data(), n, hd, 1.0f, false);

    const float* g = with_gain ? gain.data() : nullptr;
    std::vector<float> f_normed(total), f_rstd(rstd.size()), f_out(total), f_dx = dout, f_dgain = dgain0;
    ops.qk_prep_forward(f_normed.data(), f_out.data(), f_rstd.data(), x.data(), g, cosv.data(), sinv.data(), rows, seq,
                        heads, hd, rope_dims);
    ops.qk_prep_backward(f_dx.data(), f_dgain.data(), f_dx.data(), x.data(), f_normed.data(), f_rstd.data(), g,
                         cosv.data(), sinv.data(), rows, seq, heads, hd, rope_dims);
    EXPECT_TRUE(same_bits(f_normed, normed));
    EXPECT_TRUE(same_bits(f_rstd, rstd));
    EXPECT_TRUE(same_bits(f_out, out)) << "out (all zero without a gain)";
    EXPECT_TRUE(same_bits(f_dx, dx));
    EXPECT_TRUE(same_bits(f_dgain, dgain)) << "dgain (untouched without a gain)";
  }
}

TEST(FusedOps, AFusedOpTheBackendDoesNotOfferIsAnInternalError) {
  // The interface's own definition, which every backend that does not offer the op inherits.
  backend::CpuOps<float> ops;
  std::vector<float> z(4, 1.0f), nll(1);
  float loss = 0;
  const std::vector<std::int32_t> targets = {2};
  test::expect_error(
      [&] { ops.backend::Ops<float>::softcap_ce_fused(z.data(), nll.data(), &loss, targets.data(), 1, 4, 30.0f, 1.0f); },
      ErrorKind::internal, {"softcap_ce", "supports()"});
}

class FusedPaths : public ::testing::TestWithParam<test::ModelCase> {};

// forward_backward on a backend with the fused loss and on one without: the same loss and
// gradients, bit for bit, and each reports the path it took.
TEST_P(FusedPaths, TheTrainingPathGivesTheSameLossAndGradientsFusedOrComposed) {
  const test::ModelCase& mc = GetParam();
  const int batch = 3, seq = static_cast<int>(mc.model.seq_len);
  const auto ids = test::random_tokens(static_cast<std::size_t>(batch) * seq, static_cast<int>(mc.model.vocab_size), 21);
  const auto targets = test::random_tokens(ids.size(), static_cast<int>(mc.model.vocab_size), 22);
  struct Result {
    float loss_sum = 0;
    std::vector<float> grads;
    int fused = 0;  // fused op families taken
  };
  auto run = [&](backend::Ops<float>& ops) {
    model::Model<float> net(mc.model, ops, batch, seq);
    net.set_params(test::random_params(net.table(), 5));
    net.set_recurrence_active(mc.recurrence_active);
    Result r;
    for (int pass = 0; pass < 2; ++pass) {  // the second accumulates onto the first
      net.forward_backward(ids.data(), targets.data(), batch, seq, 0.5);
      ops.to_host(&r.loss_sum, net.loss_sum(), sizeof r.loss_sum);
    }
    r.grads = net.grads_host();
    for (const auto& [op, fused] : net.fused_paths()) r.fused += fused ? 1 : 0;
    return r;
  };
  backend::CpuOps<float> fused_ops;
  backend::CpuOps<float> composed_ops(false);  // the model composes the loss
  const Result fused = run(fused_ops), composed = run(composed_ops);
  EXPECT_EQ(fused.fused, static_cast<int>(backend::FusedOp::count)) << "every fused op offered and taken";
  EXPECT_EQ(composed.fused, 0);
  EXPECT_EQ(std::memcmp(&fused.loss_sum, &composed.loss_sum, sizeof(float)), 0) << fused.loss_sum << " vs " << composed.loss_sum;
  EXPECT_TRUE(same_bits(fused.grads, composed.grads));
  double norm = 0;
  for (float g : fused.grads) norm += static_cast<double>(g) * g;
  EXPECT_GT(norm, 0.0);
}

INSTANTIATE_TEST_SUITE_P(AllOptionCombinations, FusedPaths, ::testing::ValuesIn(test::model_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

// A second backward after one forward would read gradients as logits: refused.
TEST(FusedPaths, ASecondBackwardAfterOneForwardIsRefused) {
  const test::ModelCase mc = test::model_cases().front();
  backend::CpuOps<float> ops;
  model::Model<float> net(mc.model, ops, 1, static_cast<int>(mc.model.seq_len));
  const auto ids = test::random_tokens(static_cast<std::size_t>(mc.model.seq_len), static_cast<int>(mc.model.vocab_size), 4);
  net.forward(ids.data(), ids.data(), 1, static_cast<int>(mc.model.seq_len));
  EXPECT_NO_THROW(net.logits_host());
  net.backward();
  test::expect_error([&] { net.backward(); }, ErrorKind::internal, {"backward() twice"});
  test::expect_error([&] { (void)net.logits_host(); }, ErrorKind::internal, {"logits"});
}

}  // namespace
}  // namespace pgolf

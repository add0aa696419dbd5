// Optimizers against the PyTorch twin's single-step goldens (tests/reference/golden/
// optim_v1.safetensors, float64; written by make_optim_golden.py from docs/training.md and
// cross-checked there against torch.optim and plain numpy). Same formulas in double: the
// outputs must agree to rounding (1e-12 relative to each tensor's largest magnitude).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_ops.hpp"
#include "common/json.hpp"
#include "io/safetensors.hpp"
#include "optim/optimizer.hpp"
#include "support/test_support.hpp"

namespace pgolf::optim {
namespace {

using Vec = std::vector<double>;

struct OptimGolden {
  io::SafetensorsFile file = io::SafetensorsFile::open(test::source_dir() / "tests/reference/golden/optim_v1.safetensors");
  Vec get(const std::string& name) const {
    const io::TensorView& t = file.at(name);
    Vec v(static_cast<std::size_t>(t.numel()));
    std::memcpy(v.data(), t.data.data(), t.data.size());
    return v;
  }
  json meta(const std::string& c) const { return json::parse(file.metadata().at(c)); }
};

double max_rel_diff(const Vec& a, const Vec& b) {
  double diff = 0, scale = 1e-300;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

TEST(OptimizerGolden, MuonAndMuonEqR) {
  OptimGolden g;
  backend::CpuOps<double> ops;
  for (const char* c : {"muon_6x4", "muon_4x6", "muoneqr_6x4", "muoneqr_4x6"}) {
    SCOPED_TRACE(c);
    const json m = g.meta(c);
    config::MuonConfig mc;
    mc.momentum = m["momentum"];
    mc.momentum_warmup_start = m["momentum_warmup_start"];
    mc.momentum_warmup_steps = m["momentum_warmup_steps"];
    mc.nesterov = m["nesterov"];
    mc.ns_steps = m["ns_steps"];
    mc.ns_coefficients = m["ns_coefficients"].get<std::vector<double>>();
    mc.weight_decay = m["weight_decay"];
    mc.row_normalize = m["row_normalize"];
    const int rows = m["rows"], cols = m["cols"];
    const double mu = muon_momentum(mc, m["step"].get<std::int64_t>());
    EXPECT_DOUBLE_EQ(mu, m["mu"].get<double>());
    Vec w = g.get(std::string(c) + ".param"), grad = g.get(std::string(c) + ".grad"), buf = g.get(std::string(c) + ".buf");
    Vec u(w.size()), scratch(newton_schulz_scratch(rows, cols));
    const auto constants = muon_constants<double>(m["lr"].get<double>(), mu, mc, rows, cols);  // CPU: device = host
    double norm_scratch = 0.0;
    muon_update<double>(ops, w.data(), grad.data(), buf.data(), u.data(), rows, cols, constants.data(), mc,
                        scratch.data(), &norm_scratch, nullptr);
    EXPECT_LT(max_rel_diff(u, g.get(std::string(c) + ".mid.ortho")), 1e-12) << "Newton-Schulz output";
    EXPECT_LT(max_rel_diff(buf, g.get(std::string(c) + ".out.buf")), 1e-12);
    EXPECT_LT(max_rel_diff(w, g.get(std::string(c) + ".out.param")), 1e-12);
  }
}

TEST(OptimizerGolden, AdamWAndSgd) {
  OptimGolden g;
  backend::CpuOps<double> ops;
  {
    const json m = g.meta("adamw_5x3");
    Vec p = g.get("adamw_5x3.param"), grad = g.get("adamw_5x3.grad"), mm = g.get("adamw_5x3.m"), v = g.get("adamw_5x3.v");
    ops.adamw_update(p.data(), grad.data(), mm.data(), v.data(), p.size(), m["lr"], m["beta1"], m["beta2"], m["eps"],
                     m["weight_decay"], m["t"].get<std::int64_t>());
    EXPECT_LT(max_rel_diff(p, g.get("adamw_5x3.out.param")), 1e-12);
    EXPECT_LT(max_rel_diff(mm, g.get("adamw_5x3.out.m")), 1e-12);
    EXPECT_LT(max_rel_diff(v, g.get("adamw_5x3.out.v")), 1e-12);
  }
  for (const char* c : {"sgd_5x3", "sgd_first_5x3"}) {
    SCOPED_TRACE(c);
    const json m = g.meta(c);
    const bool first = m.value("first_call", false);
    Vec p = g.get(std::string(c) + ".param"), grad = g.get(std::string(c) + ".grad");
    Vec buf = first ? Vec(p.size(), 0.0) : g.get(std::string(c) + ".buf");  // a fresh buffer starts at zero
    ops.sgd_momentum_update(p.data(), grad.data(), buf.data(), p.size(), m["lr"], m["momentum"]);
    EXPECT_LT(max_rel_diff(p, g.get(std::string(c) + ".out.param")), 1e-12);
    EXPECT_LT(max_rel_diff(buf, g.get(std::string(c) + ".out.buf")), 1e-12);
  }
}

TEST(Optimizer, MomentumWarmsUpLinearly) {
  config::MuonConfig m;  // 0.92 -> 0.99 over 1500 steps
  EXPECT_DOUBLE_EQ(muon_momentum(m, 0), 0.92);
  EXPECT_NEAR(muon_momentum(m, 750), 0.955, 1e-12);
  EXPECT_DOUBLE_EQ(muon_momentum(m, 1500), 0.99);
  EXPECT_DOUBLE_EQ(muon_momentum(m, 9000), 0.99);
  m.momentum_warmup_steps = 0;
  EXPECT_DOUBLE_EQ(muon_momentum(m, 0), 0.99);
}

TEST(Optimizer, FakeQuantInt6UsesTheRowScaleGridAndRoundsHalfToEven) {
  backend::CpuOps<double> ops;
  // Row 0: max 3.875 -> s = 3.875/31 = 0.125 (exact, so the ties below are exact ties).
  // Row 1: max 0.4 < 1 -> the 1/31 floor.
  Vec w = {3.875, -0.3125, 0.1875, 0.0625, 0.4, 0.1, -0.1, 0.0};
  Vec q(w.size());
  ops.fake_quant_int6(q.data(), w.data(), 2, 4);
  EXPECT_EQ(q[0], 3.875);
  EXPECT_EQ(q[1], -0.25) << "-2.5 steps rounds half to even: -2";
  EXPECT_EQ(q[2], 0.25) << "1.5 steps rounds half to even: 2";
  EXPECT_EQ(q[3], 0.0) << "0.5 steps rounds half to even: 0";
  EXPECT_NEAR(q[4], 12.0 / 31, 1e-15) << "12.4 steps";
  EXPECT_NEAR(q[5], 3.0 / 31, 1e-15);
  EXPECT_NEAR(q[6], -3.0 / 31, 1e-15);
  EXPECT_EQ(q[7], 0.0);
}

}  // namespace
}  // namespace pgolf::optim

namespace pgolf::optim {
namespace {

TEST(Optimizer, EachGroupGetsItsLearningRate) {
  backend::CpuOps<float> ops;
  config::ModelConfig m;
  m.tie_embeddings = false;
  model::ParamTable table(m);
  config::OptimConfig o;
  Optimizer<float> untied(table, o, false, ops), tied(table, o, true, ops);
  EXPECT_EQ(untied.base_lr(table.at("blocks.0.attn.c_q.weight")), o.muon.lr);
  EXPECT_EQ(untied.base_lr(table.at("blocks.3.mlp_scale")), o.scalar.lr);
  EXPECT_EQ(untied.base_lr(table.at("bigram.proj.weight")), o.scalar.lr) << "a projection in the scalar group";
  EXPECT_EQ(untied.base_lr(table.at("lm_head.weight")), o.head.lr);
  for (const char* e : {"tok_emb.weight", "bigram.embed.weight", "ve_shared.embed.weight"}) {
    EXPECT_EQ(untied.base_lr(table.at(e)), o.untied_embed_lr) << e;
    EXPECT_EQ(tied.base_lr(table.at(e)), o.embed.lr) << e;
  }
}

}  // namespace
}  // namespace pgolf::optim

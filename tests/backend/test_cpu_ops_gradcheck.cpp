// Every op's backward against 4-point finite differences of its forward, in double precision
// (thresholds are justified in support/gradcheck.hpp). Each test builds the scalar
// loss = sum(W * op(inputs)) for a fixed random W, so the op's backward with dout = W must
// return d loss / d input for every input, activations and parameters alike.
#include <gtest/gtest.h>

#include <numeric>

#include "backend/cpu/cpu_ops.hpp"
#include "support/gradcheck.hpp"

namespace pgolf::backend {
namespace {

using test::check_gradient;
using test::kFdTolerance;
using test::random_vector;
using Vec = std::vector<double>;

CpuOps<double>& ops() {
  static CpuOps<double> o;
  return o;
}

double dot(const Vec& a, const Vec& b) { return std::inner_product(a.begin(), a.end(), b.begin(), 0.0); }

#define EXPECT_GRADIENT(values, analytic, loss)                                                                   \
  do {                                                                                                            \
    auto r_ = check_gradient(values, analytic, loss);                                                             \
    EXPECT_LT(r_.max_error, kFdTolerance) << #values << "[" << r_.worst_index << "]: analytic " << r_.worst_analytic \
                                          << " numeric " << r_.worst_numeric;                                     \
  } while (0)

TEST(CpuOpsGradcheck, Matmul) {
  const int n = 5, in = 4, out = 3;
  Vec x = random_vector(n * in, 1), w = random_vector(out * in, 2), W = random_vector(n * out, 3);
  auto loss = [&] {
    Vec y(n * out);
    ops().matmul_forward(y.data(), x.data(), w.data(), n, in, out, false);
    return dot(W, y);
  };
  Vec dx(n * in), dw(out * in);
  ops().matmul_backward(dx.data(), dw.data(), W.data(), x.data(), w.data(), n, in, out, false);
  EXPECT_GRADIENT(x, dx, loss);
  EXPECT_GRADIENT(w, dw, loss);
  // Parameter gradients accumulate; activation gradients overwrite unless asked to accumulate.
  Vec dx2 = dx, dw2 = dw;
  ops().matmul_backward(dx2.data(), dw2.data(), W.data(), x.data(), w.data(), n, in, out, false);
  for (std::size_t i = 0; i < dw.size(); ++i) EXPECT_DOUBLE_EQ(dw2[i], 2 * dw[i]);
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_DOUBLE_EQ(dx2[i], dx[i]);
  ops().matmul_backward(dx2.data(), nullptr, W.data(), x.data(), w.data(), n, in, out, true);
  for (std::size_t i = 0; i < dx.size(); ++i) EXPECT_DOUBLE_EQ(dx2[i], 2 * dx[i]);
  // accumulate = true adds the product to y.
  Vec y(n * out, 1.0), y0(n * out);
  ops().matmul_forward(y0.data(), x.data(), w.data(), n, in, out, false);
  ops().matmul_forward(y.data(), x.data(), w.data(), n, in, out, true);
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y0[i] + 1.0, 1e-12);
}

TEST(CpuOpsGradcheck, RmsNormWithMultiplier) {
  const int n = 4, dim = 6;
  const double mult = 0.7;
  Vec x = random_vector(n * dim, 4), W = random_vector(n * dim, 5);
  auto loss = [&] {
    Vec y(n * dim), r(n);
    ops().rmsnorm_forward(y.data(), r.data(), x.data(), n, dim, mult);
    return dot(W, y);
  };
  Vec y(n * dim), rstd(n), dx(n * dim, 0.0);
  ops().rmsnorm_forward(y.data(), rstd.data(), x.data(), n, dim, mult);
  for (int i = 0; i < n; ++i) {  // y = mult * x / sqrt(mean(x^2) + eps)
    double sq = 0;
    for (int c = 0; c < dim; ++c) sq += x[i * dim + c] * x[i * dim + c];
    EXPECT_NEAR(rstd[i], 1.0 / std::sqrt(sq / dim + 1.1920928955078125e-07), 1e-15);
  }
  ops().rmsnorm_backward(dx.data(), W.data(), x.data(), rstd.data(), n, dim, mult, false);
  EXPECT_GRADIENT(x, dx, loss);
}

TEST(CpuOpsGradcheck, AddScaledWithOneAndTwoScalars) {
  const std::size_t n = 12;
  Vec x = random_vector(n, 6), base = random_vector(n, 7), W = random_vector(n, 8);
  Vec s1 = {0.8}, s2 = {-1.3};
  for (bool two : {false, true}) {
    SCOPED_TRACE(two ? "two scalars" : "one scalar");
    auto loss = [&] {
      Vec y = base;
      ops().add_scaled_forward(y.data(), x.data(), s1.data(), two ? s2.data() : nullptr, n);
      return dot(W, y);
    };
    Vec dx(n), ds1 = {0.0}, ds2 = {0.0};
    ops().add_scaled_backward(dx.data(), ds1.data(), two ? ds2.data() : nullptr, W.data(), x.data(), s1.data(),
                              two ? s2.data() : nullptr, n, false);
    EXPECT_GRADIENT(x, dx, loss);
    EXPECT_GRADIENT(s1, ds1, loss);
    if (two) EXPECT_GRADIENT(s2, ds2, loss);
  }
}

TEST(CpuOpsGradcheck, ResidualScale) {
  const int n = 3, dim = 5;
  Vec base = random_vector(n * dim, 9), y = random_vector(n * dim, 10), scale = random_vector(dim, 11);
  Vec W = random_vector(n * dim, 12);
  auto loss = [&] {
    Vec out(n * dim);
    ops().residual_scale_forward(out.data(), base.data(), y.data(), scale.data(), n, dim);
    return dot(W, out);
  };
  Vec dy(n * dim), dscale(dim, 0.0);
  ops().residual_scale_backward(dy.data(), dscale.data(), W.data(), y.data(), scale.data(), n, dim);
  EXPECT_GRADIENT(y, dy, loss);
  EXPECT_GRADIENT(scale, dscale, loss);
  EXPECT_GRADIENT(base, W, loss);  // the residual path passes dout through unchanged
}

TEST(CpuOpsGradcheck, ResidMix) {
  const int n = 4, dim = 3;
  Vec x = random_vector(n * dim, 13), x0 = random_vector(n * dim, 14), mix = random_vector(2 * dim, 15);
  Vec W = random_vector(n * dim, 16);
  auto loss = [&] {
    Vec xin(n * dim);
    ops().resid_mix_forward(xin.data(), x.data(), x0.data(), mix.data(), n, dim);
    return dot(W, xin);
  };
  Vec dx(n * dim), dx0(n * dim, 0.0), dmix(2 * dim, 0.0);
  ops().resid_mix_backward(dx.data(), dx0.data(), dmix.data(), W.data(), x.data(), x0.data(), mix.data(), n, dim);
  EXPECT_GRADIENT(x, dx, loss);
  EXPECT_GRADIENT(x0, dx0, loss);
  EXPECT_GRADIENT(mix, dmix, loss);
}

TEST(CpuOpsGradcheck, SmearGateRespectsSequenceStarts) {
  const int batch = 2, seq = 4, dim = 3;
  Vec x = random_vector(batch * seq * dim, 17), gate = random_vector(dim, 18), W = random_vector(batch * seq * dim, 19);
  auto forward = [&] {
    Vec y(batch * seq * dim);
    ops().smear_forward(y.data(), x.data(), gate.data(), batch, seq, dim);
    return y;
  };
  Vec y = forward();
  const double g0 = 1 / (1 + std::exp(-gate[0]));
  EXPECT_NEAR(y[seq * dim], (1 - g0) * x[seq * dim], 1e-15) << "sequence 1 starts with x[-1] = 0";
  EXPECT_NEAR(y[dim], (1 - g0) * x[dim] + g0 * x[0], 1e-15);
  auto loss = [&] { return dot(W, forward()); };
  Vec dx(x.size()), dgate(dim, 0.0);
  ops().smear_backward(dx.data(), dgate.data(), W.data(), x.data(), gate.data(), batch, seq, dim);
  EXPECT_GRADIENT(x, dx, loss);
  EXPECT_GRADIENT(gate, dgate, loss);
}

TEST(CpuOpsGradcheck, SkipPlainAndSigmoidGated) {
  const int n = 4, dim = 3;
  Vec x = random_vector(n * dim, 20), s = random_vector(n * dim, 21), w = random_vector(dim, 22);
  Vec gate = random_vector(dim, 23), W = random_vector(n * dim, 24);
  for (bool gated : {false, true}) {
    SCOPED_TRACE(gated ? "gated" : "plain");
    auto loss = [&] {
      Vec y = x;
      ops().skip_forward(y.data(), s.data(), w.data(), gated ? gate.data() : nullptr, n, dim);
      return dot(W, y);
    };
    Vec dx = W, ds(n * dim, 0.0), dw(dim, 0.0), dgate(dim, 0.0);
    ops().skip_backward(dx.data(), ds.data(), dw.data(), gated ? dgate.data() : nullptr, x.data(), s.data(), w.data(),
                        gated ? gate.data() : nullptr, n, dim);
    EXPECT_GRADIENT(x, dx, loss);
    EXPECT_GRADIENT(s, ds, loss);
    EXPECT_GRADIENT(w, dw, loss);
    if (gated) EXPECT_GRADIENT(gate, dgate, loss);
  }
}

TEST(CpuOpsGradcheck, LaneMerge) {
  const std::size_t n = 10;
  Vec a = random_vector(n, 25), b = random_vector(n, 26), m = {0.3}, W = random_vector(n, 27);
  auto loss = [&] {
    Vec out(n);
    ops().lane_merge_forward(out.data(), a.data(), b.data(), m.data(), n);
    return dot(W, out);
  };
  Vec da(n), db(n), dm = {0.0};
  ops().lane_merge_backward(da.data(), db.data(), dm.data(), W.data(), a.data(), b.data(), m.data(), n);
  EXPECT_GRADIENT(a, da, loss);
  EXPECT_GRADIENT(b, db, loss);
  EXPECT_GRADIENT(m, dm, loss);
}

TEST(CpuOpsGradcheck, PartialRopeAndItsInverse) {
  const int seq = 3, rows = 2 * seq, heads = 2, hd = 6, r = 4;
  Vec cos_t(seq * r / 2), sin_t(seq * r / 2);
  for (int t = 0; t < seq; ++t)
    for (int j = 0; j < r / 2; ++j) {
      const double theta = t * std::pow(500.0, -2.0 * j / r);
      cos_t[t * r / 2 + j] = std::cos(theta);
      sin_t[t * r / 2 + j] = std::sin(theta);
    }
  Vec x = random_vector(rows * heads * hd, 28), W = random_vector(rows * heads * hd, 29);
  auto forward = [&] {
    Vec y = x;
    ops().rope_apply(y.data(), cos_t.data(), sin_t.data(), rows, seq, heads, hd, r, false);
    return y;
  };
  Vec y = forward();
  // Row 4 is position 1: a' = a cos + b sin, b' = -a sin + b cos on dims (0, 2) and (1, 3);
  // dims 4 and 5 pass through.
  const std::size_t o = (4 * heads + 1) * hd;
  EXPECT_NEAR(y[o + 0], x[o + 0] * cos_t[2] + x[o + 2] * sin_t[2], 1e-15);
  EXPECT_NEAR(y[o + 2], -x[o + 0] * sin_t[2] + x[o + 2] * cos_t[2], 1e-15);
  EXPECT_EQ(y[o + 5], x[o + 5]);
  auto loss = [&] { return dot(W, forward()); };
  Vec dx = W;
  ops().rope_apply(dx.data(), cos_t.data(), sin_t.data(), rows, seq, heads, hd, r, true);
  EXPECT_GRADIENT(x, dx, loss);
}

TEST(CpuOpsGradcheck, HeadGain) {
  const int rows = 3, heads = 2, hd = 4;
  Vec x = random_vector(rows * heads * hd, 30), gain = random_vector(heads, 31, 0.5, 1.5);
  Vec W = random_vector(rows * heads * hd, 32);
  auto loss = [&] {
    Vec y(x.size());
    ops().head_gain_forward(y.data(), x.data(), gain.data(), rows, heads, hd);
    return dot(W, y);
  };
  Vec dx(x.size()), dgain(heads, 0.0);
  ops().head_gain_backward(dx.data(), dgain.data(), W.data(), x.data(), gain.data(), rows, heads, hd);
  EXPECT_GRADIENT(x, dx, loss);
  EXPECT_GRADIENT(gain, dgain, loss);
}

TEST(CpuOpsGradcheck, CausalGqaAttention) {
  const int batch = 2, seq = 5, heads = 4, kv_heads = 2, hd = 3;
  Vec q = random_vector(batch * seq * heads * hd, 33), k = random_vector(batch * seq * kv_heads * hd, 34);
  Vec v = random_vector(batch * seq * kv_heads * hd, 35), W = random_vector(q.size(), 36);
  auto forward = [&] {
    Vec y(q.size()), lse(batch * heads * seq);
    ops().attention_forward(y.data(), lse.data(), q.data(), k.data(), v.data(), batch, seq, heads, kv_heads, hd);
    return y;
  };
  Vec y = forward();
  // Position 0 sees only itself: y = v[0] of its KV head (head 3 uses KV head 1).
  for (int e = 0; e < hd; ++e) EXPECT_NEAR(y[3 * hd + e], v[1 * hd + e], 1e-14);
  auto loss = [&] { return dot(W, forward()); };
  Vec lse(batch * heads * seq), dq(q.size()), dk(k.size()), dv(v.size());
  ops().attention_forward(y.data(), lse.data(), q.data(), k.data(), v.data(), batch, seq, heads, kv_heads, hd);
  ops().attention_backward(dq.data(), dk.data(), dv.data(), W.data(), q.data(), k.data(), v.data(), y.data(),
                           lse.data(), batch, seq, heads, kv_heads, hd, false);
  EXPECT_GRADIENT(q, dq, loss);
  EXPECT_GRADIENT(k, dk, loss);
  EXPECT_GRADIENT(v, dv, loss);
  // Causality: the output at position t does not depend on keys after t.
  Vec k2 = k;
  k2[((1 * seq + 4) * kv_heads + 0) * hd] += 5.0;  // key at the last position of sequence 1
  Vec y2(q.size());
  ops().attention_forward(y2.data(), lse.data(), q.data(), k2.data(), v.data(), batch, seq, heads, kv_heads, hd);
  for (std::size_t i = 0; i < (batch * seq - 1) * static_cast<std::size_t>(heads * hd); ++i) EXPECT_EQ(y[i], y2[i]) << i;
}

TEST(CpuOpsGradcheck, XsaRemovesTheOwnValueDirection) {
  const int rows = 4, heads = 4, kv_heads = 2, hd = 3;
  Vec y = random_vector(rows * heads * hd, 37), v = random_vector(rows * kv_heads * hd, 38);
  Vec W = random_vector(y.size(), 39);
  auto forward = [&] {
    Vec out(y.size());
    ops().xsa_forward(out.data(), y.data(), v.data(), rows, heads, kv_heads, hd);
    return out;
  };
  Vec out = forward();
  for (int r = 0; r < rows; ++r)  // the output is orthogonal to its own value direction
    for (int h = 0; h < heads; ++h) {
      const double* vv = v.data() + (r * kv_heads + h / 2) * hd;
      double d = 0;
      for (int e = 0; e < hd; ++e) d += out[(r * heads + h) * hd + e] * vv[e];
      EXPECT_NEAR(d, 0.0, 1e-14);
    }
  auto loss = [&] { return dot(W, forward()); };
  Vec dy(y.size()), dv(v.size(), 0.0);
  ops().xsa_backward(dy.data(), dv.data(), W.data(), y.data(), v.data(), rows, heads, kv_heads, hd);
  EXPECT_GRADIENT(y, dy, loss);
  EXPECT_GRADIENT(v, dv, loss);
  // A zero value vector removes nothing (the 1e-12 floor keeps it finite).
  Vec zero_v(v.size(), 0.0), out0(y.size());
  ops().xsa_forward(out0.data(), y.data(), zero_v.data(), rows, heads, kv_heads, hd);
  EXPECT_EQ(out0, y);
}

TEST(CpuOpsGradcheck, LeakyReluSquared) {
  const std::size_t n = 16;
  Vec h = random_vector(n, 40);
  for (auto& x : h) x += x > 0 ? 0.1 : -0.1;  // keep finite differences away from the kink at 0
  Vec W = random_vector(n, 41);
  const double slope = 0.5;
  auto loss = [&] {
    Vec z(n);
    ops().leaky_relu_sq_forward(z.data(), h.data(), slope, n);
    return dot(W, z);
  };
  Vec z(n), dh(n);
  ops().leaky_relu_sq_forward(z.data(), h.data(), slope, n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_DOUBLE_EQ(z[i], h[i] > 0 ? h[i] * h[i] : 0.25 * h[i] * h[i]);
  ops().leaky_relu_sq_backward(dh.data(), W.data(), h.data(), slope, n);
  EXPECT_GRADIENT(h, dh, loss);
}

TEST(CpuOpsGradcheck, SoftcapCrossEntropy) {
  const int n = 3, vocab = 7;
  const double cap = 2.5;
  Vec z = random_vector(n * vocab, 42, 3.0);
  std::vector<std::int32_t> targets = {0, 6, 3};
  auto loss = [&] {
    Vec logits = z, sum = {0.0};
    ops().softcap_ce_forward(logits.data(), nullptr, sum.data(), targets.data(), n, vocab, cap);
    return sum[0] * 0.5;
  };
  Vec logits = z, nll(n), sum = {0.0};
  ops().softcap_ce_forward(logits.data(), nll.data(), sum.data(), targets.data(), n, vocab, cap);
  for (int i = 0; i < n; ++i) {  // nll = logsumexp(c tanh(z/c)) - c tanh(z_target/c)
    double se = 0;
    for (int c = 0; c < vocab; ++c) se += std::exp(cap * std::tanh(z[i * vocab + c] / cap));
    EXPECT_NEAR(nll[i], std::log(se) - cap * std::tanh(z[i * vocab + targets[i]] / cap), 1e-13);
  }
  EXPECT_NEAR(sum[0], nll[0] + nll[1] + nll[2], 1e-13);
  Vec dz(n * vocab);
  ops().softcap_ce_backward(dz.data(), logits.data(), targets.data(), n, vocab, cap, 0.5);
  EXPECT_GRADIENT(z, dz, loss);
}

TEST(CpuOpsGradcheck, EmbeddingWithRepeatedIds) {
  const int n = 5, dim = 3, rows = 4;
  Vec table = random_vector(rows * dim, 43), W = random_vector(n * dim, 44);
  std::vector<std::int32_t> ids = {2, 0, 2, 3, 2};
  auto loss = [&] {
    Vec out(n * dim);
    ops().embedding_forward(out.data(), ids.data(), table.data(), n, dim);
    return dot(W, out);
  };
  Vec dtable(rows * dim, 0.0);
  ops().embedding_backward(dtable.data(), ids.data(), W.data(), n, dim);
  EXPECT_GRADIENT(table, dtable, loss);
  EXPECT_EQ(dtable[1 * dim], 0.0) << "row 1 is never used";
}

TEST(CpuOps, BigramHashMatchesTheFormulaIncludingInt32WrapAround) {
  std::vector<std::int32_t> ids = {5, 7, 1023, 0, 60000, 65535, 1, 2};
  std::vector<std::int32_t> h(ids.size());
  ops().bigram_hash(h.data(), ids.data(), 2, 4, 1536);
  auto expect = [](std::int64_t cur, std::int64_t prev) {
    // int32 two's-complement products, XOR, non-negative remainder modulo 1535
    auto wrap = [](std::int64_t v) { return static_cast<std::int32_t>(static_cast<std::uint32_t>(v)); };
    std::int64_t x = wrap(36313 * cur) ^ wrap(27191 * prev);
    return static_cast<std::int32_t>(((x % 1535) + 1535) % 1535);
  };
  EXPECT_EQ(h[0], 1535);
  EXPECT_EQ(h[1], expect(7, 5));
  EXPECT_EQ(h[2], expect(1023, 7));
  EXPECT_EQ(h[3], expect(0, 1023));
  EXPECT_EQ(h[4], 1535) << "each sequence starts with bucket Vb-1";
  EXPECT_EQ(h[5], expect(65535, 60000)) << "36313 * 65535 wraps around in int32";
  EXPECT_LT(static_cast<std::int32_t>(static_cast<std::uint32_t>(36313u * 65535u)), 0) << "the case really wraps";
  EXPECT_EQ(h[6], expect(1, 65535));
  EXPECT_EQ(h[2], ((36313 * 1023) ^ (27191 * 7)) % 1535) << "small ids: the plain formula";
}

}  // namespace
}  // namespace pgolf::backend

// The quantizers of SPEC 5.2: value ranges, scales, round-trip error bounds, the percentile
// search, and full GPTQ against GPTQ-lite in the error GPTQ minimises.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "export/quantize.hpp"
#include "io/safetensors.hpp"

namespace pgolf::exporter {
namespace {

const std::vector<double> kPercentiles = {0.999, 0.9995, 0.9999, 0.99999, 1.0};

// Gaussian weights with a few large outliers per row, as trained matrices have.
std::vector<float> weights(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double outlier = 8.0) {
  Rng rng(seed);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = static_cast<float>(0.02 * rng.normal());
  for (std::int64_t r = 0; r < rows; ++r) w[static_cast<std::size_t>(r * cols + (r * 7) % cols)] *= static_cast<float>(outlier);
  return w;
}

float scale_of(const QuantizedTensor& t, std::int64_t r) { return io::half_to_float(t.scales[static_cast<std::size_t>(r)]); }

TEST(RowQuantile, InterpolatesLinearlyBetweenOrderStatisticsOfAbsoluteValues) {
  // |row| sorted: 0, 1, ..., 10 (signs must not matter).
  std::vector<float> row = {-3, 7, 0, 10, -1, 5, 2, -9, 4, 6, 8};
  EXPECT_DOUBLE_EQ(row_quantile(row, 1.0), 10.0);
  EXPECT_DOUBLE_EQ(row_quantile(row, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(row_quantile(row, 0.95), 9.5);   // position 9.5
  EXPECT_DOUBLE_EQ(row_quantile(row, 0.5), 5.0);
  EXPECT_NEAR(row_quantile(row, 0.999), 9.99, 1e-12);
}

TEST(Int6Lite, ValuesScalesAndErrorFollowTheSpec) {
  const std::int64_t rows = 48, cols = 96;
  const auto w = weights(rows, cols, 1);
  const QuantizedTensor t = quantize_int6_lite("m", w, rows, cols, kPercentiles);
  ASSERT_EQ(t.scheme, Scheme::int6);
  ASSERT_EQ(t.q.size(), w.size());
  ASSERT_EQ(t.scales.size(), static_cast<std::size_t>(rows));
  const std::vector<float> d = dequantize(t);
  double sq = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = scale_of(t, r);
    const std::span<const float> row(w.data() + r * cols, static_cast<std::size_t>(cols));
    // s_r = fp16(max(quantile(|W_r|, p) / 31, 1/31)) for the chosen p.
    const double c = row_quantile(row, t.clip_percentile);
    EXPECT_EQ(t.scales[static_cast<std::size_t>(r)], io::float_to_half(static_cast<float>(std::max(c / 31.0, 1.0 / 31.0))));
    for (std::int64_t k = 0; k < cols; ++k) {
      const auto i = static_cast<std::size_t>(r * cols + k);
      ASSERT_GE(t.q[i], -31);
      ASSERT_LE(t.q[i], 31);
      ASSERT_EQ(d[i], static_cast<float>(t.q[i]) * s);  // dequantisation is exactly q * s
      const double err = std::fabs(static_cast<double>(w[i]) - d[i]);
      if (std::fabs(w[i]) <= 31.0f * s) {
        ASSERT_LE(err, 0.5 * s * (1 + 1e-6)) << "unclipped entries round to nearest";
      } else {
        ASSERT_EQ(std::abs(t.q[i]), 31) << "clipped entries saturate";
      }
      sq += err * err;
    }
  }
  EXPECT_NEAR(t.mse, sq / static_cast<double>(w.size()), 1e-12 * (1 + t.mse));
}

TEST(Int6Lite, KeepsThePercentileWithTheLowestMse) {
  const std::int64_t rows = 32, cols = 64;
  for (double outlier : {1.0, 8.0, 40.0}) {
    const auto w = weights(rows, cols, 2, outlier);
    const QuantizedTensor best = quantize_int6_lite("m", w, rows, cols, kPercentiles);
    for (double p : kPercentiles) {
      const QuantizedTensor one = quantize_int6_lite("m", w, rows, cols, {p});
      EXPECT_LE(best.mse, one.mse) << "outlier " << outlier << " p " << p;
      if (p == best.clip_percentile) {
        EXPECT_EQ(best.q, one.q);
      }
    }
  }
  // Small weights: the 1/31 floor of the scale is in force.
  std::vector<float> tiny(64, 0.001f);
  const QuantizedTensor t = quantize_int6_lite("m", tiny, 1, 64, kPercentiles);
  EXPECT_EQ(t.scales[0], io::float_to_half(1.0f / 31.0f));
  for (auto q : t.q) EXPECT_EQ(q, 0);
}

TEST(Int8, ClipsAtTheRowPercentileAndRoundsToNearest) {
  const std::int64_t rows = 16, cols = 2000;  // enough columns that 0.9999984 clips nothing but the max
  const auto w = weights(rows, cols, 3, 50.0);
  const double p = 0.9999984;
  const QuantizedTensor t = quantize_int8("e", w, rows, cols, p);
  const std::vector<float> d = dequantize(t);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::span<const float> row(w.data() + r * cols, static_cast<std::size_t>(cols));
    const double c = row_quantile(row, p);
    const float s = scale_of(t, r);
    EXPECT_EQ(t.scales[static_cast<std::size_t>(r)], io::float_to_half(static_cast<float>(std::max(c / 127.0, 1.0 / 127.0))));
    for (std::int64_t k = 0; k < cols; ++k) {
      const auto i = static_cast<std::size_t>(r * cols + k);
      ASSERT_GE(t.q[i], -127);
      ASSERT_LE(t.q[i], 127);
      const double clipped = std::clamp(static_cast<double>(w[i]), -c, c);
      ASSERT_LE(std::fabs(clipped - d[i]), 0.5 * s * (1 + 1e-5) + 1e-7);
    }
  }
  double bound = 0.0;  // rounding to nearest: at most (s/2)^2 per entry
  for (std::int64_t r = 0; r < rows; ++r) bound += 0.25 * scale_of(t, r) * scale_of(t, r) * static_cast<double>(cols);
  EXPECT_LE(t.mse, bound / static_cast<double>(w.size()));
}

TEST(Passthrough, Fp16RoundsEachValueAndFp32KeepsThemExactly) {
  const std::vector<float> v = {0.1f, -3.25f, 1e-5f, 65504.0f, 0.0f};
  const QuantizedTensor h = passthrough("x", {5}, v, Scheme::fp16);
  const QuantizedTensor f = passthrough("x", {5}, v, Scheme::fp32);
  const auto dh = dequantize(h), df = dequantize(f);
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(dh[i], io::half_to_float(io::float_to_half(v[i])));
    EXPECT_LE(std::fabs(dh[i] - v[i]), std::fabs(v[i]) * 0x1p-11f + 6e-8f);
    EXPECT_EQ(df[i], v[i]);
  }
}

// Inputs with strongly correlated features: X = Z A, so H = A^T cov(Z) A is far from diagonal.
std::vector<double> correlated_hessian(int cols, std::uint64_t seed) {
  Rng rng(seed);
  const int latent = cols / 4, n = 4096;
  std::vector<double> a(static_cast<std::size_t>(latent) * cols);
  for (auto& x : a) x = rng.normal();
  std::vector<double> h(static_cast<std::size_t>(cols) * cols, 0.0), x(static_cast<std::size_t>(cols));
  for (int s = 0; s < n; ++s) {
    std::fill(x.begin(), x.end(), 0.0);
    for (int l = 0; l < latent; ++l) {
      const double z = rng.normal();
      for (int c = 0; c < cols; ++c) x[static_cast<std::size_t>(c)] += z * a[static_cast<std::size_t>(l) * cols + c];
    }
    for (int c = 0; c < cols; ++c) x[static_cast<std::size_t>(c)] += 0.05 * rng.normal();  // keeps H full rank
    for (int i = 0; i < cols; ++i)
      for (int j = 0; j < cols; ++j) h[static_cast<std::size_t>(i) * cols + j] += x[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(j)] / n;
  }
  return h;
}

TEST(FullGptq, BeatsGptqLiteInTheHessianNormOnCorrelatedInputs) {
  const std::int64_t rows = 64, cols = 256;  // two 128-column blocks
  const auto w = weights(rows, cols, 4);
  const auto h = correlated_hessian(static_cast<int>(cols), 5);
  GptqSettings g{kPercentiles, 0.01, 2, 128};
  const QuantizedTensor full = quantize_int6_gptq("m", w, rows, cols, h, g);
  const QuantizedTensor lite = quantize_int6_lite("m", w, rows, cols, kPercentiles);
  for (auto q : full.q) {
    ASSERT_GE(q, -31);
    ASSERT_LE(q, 31);
  }
  const double e_full = hessian_error(w, dequantize(full), rows, cols, h);
  const double e_lite = hessian_error(w, dequantize(lite), rows, cols, h);
  EXPECT_LT(e_full, 0.7 * e_lite) << "full " << e_full << " lite " << e_lite;
  // GPTQ trades plain weight error for output error.
  EXPECT_GE(full.mse, lite.mse);
}

TEST(FullGptq, WithAnIdentityHessianIsRoundToNearest) {
  // H = I: no correlations to exploit, U is diagonal and no error is propagated, so full GPTQ
  // makes the same choices as GPTQ-lite.
  const std::int64_t rows = 24, cols = 40;
  const auto w = weights(rows, cols, 6);
  std::vector<double> h(static_cast<std::size_t>(cols * cols), 0.0);
  for (std::int64_t i = 0; i < cols; ++i) h[static_cast<std::size_t>(i * cols + i)] = 1.0;
  const QuantizedTensor full = quantize_int6_gptq("m", w, rows, cols, h, {kPercentiles, 0.01, 2, 16});
  const QuantizedTensor lite = quantize_int6_lite("m", w, rows, cols, kPercentiles);
  EXPECT_EQ(full.clip_percentile, lite.clip_percentile);
  EXPECT_EQ(full.q, lite.q);
  EXPECT_EQ(full.scales, lite.scales);
}

TEST(FullGptq, BlockSizeDoesNotChangeTheMathAndDeadColumnsBecomeZero) {
  const std::int64_t rows = 16, cols = 64;
  const auto w = weights(rows, cols, 7);
  auto h = correlated_hessian(static_cast<int>(cols), 8);
  const QuantizedTensor a = quantize_int6_gptq("m", w, rows, cols, h, {kPercentiles, 0.01, 2, 128});
  const QuantizedTensor b = quantize_int6_gptq("m", w, rows, cols, h, {kPercentiles, 0.01, 2, 7});
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.q.size(); ++i) differ += a.q[i] != b.q[i];
  EXPECT_LE(differ, a.q.size() / 500) << "lazy block updates only reorder sums";

  // An input never active in calibration: its row and column of H are zero.
  const std::int64_t dead = 13;
  for (std::int64_t i = 0; i < cols; ++i) {
    h[static_cast<std::size_t>(dead * cols + i)] = 0.0;
    h[static_cast<std::size_t>(i * cols + dead)] = 0.0;
  }
  const QuantizedTensor t = quantize_int6_gptq("m", w, rows, cols, h, {kPercentiles, 0.01, 2, 128});
  for (std::int64_t r = 0; r < rows; ++r) EXPECT_EQ(t.q[static_cast<std::size_t>(r * cols + dead)], 0) << r;
}

TEST(FullGptq, ASingularHessianWithoutDampingIsAClearError) {
  const std::int64_t rows = 4, cols = 8;
  const auto w = weights(rows, cols, 9);
  std::vector<double> h(static_cast<std::size_t>(cols * cols), 1.0);  // rank one, no zero diagonal
  try {
    quantize_int6_gptq("blocks.0.mlp.fc.weight", w, rows, cols, h, {kPercentiles, 0.0, 1, 128});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.mlp.fc.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("export.gptq.damping"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pgolf::exporter

#include "export/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.hpp"
#include "io/safetensors.hpp"

// LAPACK (from OpenBLAS): Cholesky factorisation and inverse from the factor.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}

namespace pgolf::exporter {

namespace {

// Per-row fp16 scales max(c_r / levels, 1 / levels).
std::vector<std::uint16_t> row_scales(std::span<const float> w, std::int64_t rows, std::int64_t cols, double p,
                                      double levels, std::vector<double>* clips = nullptr) {
  std::vector<std::uint16_t> s(static_cast<std::size_t>(rows));
  if (clips != nullptr) clips->resize(static_cast<std::size_t>(rows));
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const double c = row_quantile(w.subspan(static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols)), p);
    if (clips != nullptr) (*clips)[static_cast<std::size_t>(r)] = c;
    s[static_cast<std::size_t>(r)] = io::float_to_half(static_cast<float>(std::max(c / levels, 1.0 / levels)));
  }
  return s;
}

// U, upper triangular with H^-1 = U^T U (row-major, n x n), from a symmetric positive-definite
// H: Cholesky of H, its inverse, then the upper Cholesky factor of the inverse (LAPACK).
std::vector<double> upper_cholesky_of_inverse(std::vector<double> h, int n, const std::string& name) {
  // H is symmetric, so its row-major array is also its column-major array.
  const char lower = 'L', upper = 'U';
  int info = 0;
  dpotrf_(&lower, &n, h.data(), &n, &info);
  if (info == 0) dpotri_(&lower, &n, h.data(), &n, &info);
  if (info != 0)
    fail(ErrorKind::data, "gptq: the damped Hessian of ", name, " is not positive definite (LAPACK info ", info,
         "); raise export.gptq.damping");
  for (int j = 0; j < n; ++j)  // mirror the lower triangle of H^-1 (column-major) to the upper one
    for (int i = j + 1; i < n; ++i) h[static_cast<std::size_t>(i) * n + j] = h[static_cast<std::size_t>(j) * n + i];
  dpotrf_(&upper, &n, h.data(), &n, &info);
  if (info != 0)
    fail(ErrorKind::data, "gptq: the inverse Hessian of ", name, " is not positive definite (LAPACK info ", info,
         "); raise export.gptq.damping");
  // Column-major upper factor: U(i, j) = h[i + j n] for i <= j.
  std::vector<double> u(static_cast<std::size_t>(n) * n, 0.0);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i <= j; ++i) u[static_cast<std::size_t>(i) * n + j] = h[static_cast<std::size_t>(j) * n + i];
  return u;
}

}  // namespace

Scheme scheme_for(const model::ParamSpec& p, std::int64_t passthrough_max_numel) {
  switch (model::quant_class(p.name, p.numel(), passthrough_max_numel)) {
    case model::QuantClass::fp16: return Scheme::fp16;
    case model::QuantClass::fp32_control: return Scheme::fp32;
    case model::QuantClass::int6: return Scheme::int6;
    case model::QuantClass::int8: return Scheme::int8;
  }
  return Scheme::fp16;
}

double row_quantile(std::span<const float> row, double p) {
  if (row.empty()) return 0.0;
  std::vector<double> a(row.size());
  for (std::size_t i = 0; i < row.size(); ++i) a[i] = std::fabs(static_cast<double>(row[i]));
  const double pos = p * static_cast<double>(a.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, a.size() - 1);
  std::nth_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(lo), a.end());
  const double vlo = a[lo];
  double vhi = vlo;
  if (hi != lo) vhi = *std::min_element(a.begin() + static_cast<std::ptrdiff_t>(lo) + 1, a.end());
  return vlo + (vhi - vlo) * (pos - static_cast<double>(lo));
}

QuantizedTensor quantize_int6_lite(const std::string& name, std::span<const float> w, std::int64_t rows,
                                   std::int64_t cols, const std::vector<double>& percentiles) {
  QuantizedTensor best;
  best.mse = std::numeric_limits<double>::infinity();
  for (double p : percentiles) {
    QuantizedTensor t;
    t.name = name;
    t.shape = {rows, cols};
    t.scheme = Scheme::int6;
    t.clip_percentile = p;
    t.scales = row_scales(w, rows, cols, p, 31.0);
    t.q.resize(w.size());
    double sq = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float s = io::half_to_float(t.scales[static_cast<std::size_t>(r)]);
      for (std::int64_t c = 0; c < cols; ++c) {
        const auto i = static_cast<std::size_t>(r * cols + c);
        const float q = std::clamp(std::nearbyint(w[i] / s), -31.0f, 31.0f);
        t.q[i] = static_cast<std::int8_t>(q);
        const double e = static_cast<double>(w[i]) - static_cast<double>(q * s);
        sq += e * e;
      }
    }
    t.mse = sq / static_cast<double>(w.size());
    if (t.mse < best.mse) best = std::move(t);
  }
  return best;
}

QuantizedTensor quantize_int6_gptq(const std::string& name, std::span<const float> w, std::int64_t rows,
                                   std::int64_t cols, std::span<const double> h, const GptqSettings& g) {
  const int n = static_cast<int>(cols);
  if (h.size() != static_cast<std::size_t>(n) * n)
    fail(ErrorKind::internal, "gptq: ", name, ": the Hessian is not ", n, " x ", n);
  std::vector<double> hd(h.begin(), h.end());
  std::vector<float> ww(w.begin(), w.end());
  // Dead inputs (never active in calibration) carry no information: quantize them to zero.
  for (int j = 0; j < n; ++j)
    if (hd[static_cast<std::size_t>(j) * n + j] == 0.0) {
      hd[static_cast<std::size_t>(j) * n + j] = 1.0;
      for (std::int64_t r = 0; r < rows; ++r) ww[static_cast<std::size_t>(r * cols + j)] = 0.0f;
    }
  for (int a = 0; a < g.damping_applications; ++a) {
    double mean = 0.0;
    for (int j = 0; j < n; ++j) mean += hd[static_cast<std::size_t>(j) * n + j];
    mean /= n;
    for (int j = 0; j < n; ++j) hd[static_cast<std::size_t>(j) * n + j] += g.damping * mean;
  }
  // Columns in order of descending Hessian diagonal (stable for ties).
  std::vector<int> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) {
    return hd[static_cast<std::size_t>(a) * n + a] > hd[static_cast<std::size_t>(b) * n + b];
  });
  std::vector<double> hp(static_cast<std::size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      hp[static_cast<std::size_t>(i) * n + j] = hd[static_cast<std::size_t>(perm[i]) * n + perm[j]];
  const std::vector<double> u = upper_cholesky_of_inverse(std::move(hp), n, name);
  std::vector<double> wp(static_cast<std::size_t>(rows) * n);  // permuted working copy
  for (std::int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < n; ++j)
      wp[static_cast<std::size_t>(r) * n + j] = ww[static_cast<std::size_t>(r * cols + perm[static_cast<std::size_t>(j)])];

  QuantizedTensor best;
  best.mse = std::numeric_limits<double>::infinity();
  for (double p : g.percentiles) {
    QuantizedTensor t;
    t.name = name;
    t.shape = {rows, cols};
    t.scheme = Scheme::int6;
    t.clip_percentile = p;
    t.scales = row_scales(ww, rows, cols, p, 31.0);  // row statistics do not depend on column order
    std::vector<std::int8_t> qp(static_cast<std::size_t>(rows) * n);
    const int block = std::max(1, g.block_size);
    // Rows are independent given their scales, so each thread runs whole rows: the result does
    // not depend on the thread count. Inside a 128-column block the error of each column is
    // propagated at once; to the later columns once per block (the same sums, cache-friendly).
#pragma omp parallel for schedule(dynamic, 4)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float s = io::half_to_float(t.scales[static_cast<std::size_t>(r)]);
      std::vector<double> row(wp.begin() + static_cast<std::ptrdiff_t>(r) * n,
                              wp.begin() + static_cast<std::ptrdiff_t>(r + 1) * n);
      std::vector<double> err(static_cast<std::size_t>(block));
      for (int b0 = 0; b0 < n; b0 += block) {
        const int b1 = std::min(n, b0 + block);
        for (int j = b0; j < b1; ++j) {
          const float q = std::clamp(std::nearbyint(static_cast<float>(row[static_cast<std::size_t>(j)]) / s), -31.0f, 31.0f);
          qp[static_cast<std::size_t>(r) * n + j] = static_cast<std::int8_t>(q);
          const double* urow = u.data() + static_cast<std::size_t>(j) * n;
          const double e = (row[static_cast<std::size_t>(j)] - static_cast<double>(q * s)) / urow[j];
          err[static_cast<std::size_t>(j - b0)] = e;
          for (int k = j + 1; k < b1; ++k) row[static_cast<std::size_t>(k)] -= e * urow[k];
        }
        for (int j = b0; j < b1; ++j) {
          const double e = err[static_cast<std::size_t>(j - b0)];
          if (e == 0.0) continue;
          const double* urow = u.data() + static_cast<std::size_t>(j) * n;
          for (int k = b1; k < n; ++k) row[static_cast<std::size_t>(k)] -= e * urow[k];
        }
      }
    }
    // Plain MSE against the original weights, as the record picks the percentile.
    double sq = 0.0;
    t.q.resize(static_cast<std::size_t>(rows) * n);
    for (std::int64_t r = 0; r < rows; ++r) {
      const float s = io::half_to_float(t.scales[static_cast<std::size_t>(r)]);
      for (int j = 0; j < n; ++j) {
        const std::int8_t q = qp[static_cast<std::size_t>(r) * n + j];
        const auto dst = static_cast<std::size_t>(r * cols + perm[static_cast<std::size_t>(j)]);
        t.q[dst] = q;
        const double e = static_cast<double>(w[dst]) - static_cast<double>(static_cast<float>(q) * s);
        sq += e * e;
      }
    }
    t.mse = sq / static_cast<double>(w.size());
    if (t.mse < best.mse) best = std::move(t);
  }
  return best;
}

QuantizedTensor quantize_int8(const std::string& name, std::span<const float> w, std::int64_t rows, std::int64_t cols,
                              double percentile) {
  QuantizedTensor t;
  t.name = name;
  t.shape = {rows, cols};
  t.scheme = Scheme::int8;
  t.clip_percentile = percentile;
  std::vector<double> clips;
  t.scales = row_scales(w, rows, cols, percentile, 127.0, &clips);
  t.q.resize(w.size());
  double sq = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = io::half_to_float(t.scales[static_cast<std::size_t>(r)]);
    const auto c = static_cast<float>(clips[static_cast<std::size_t>(r)]);
    for (std::int64_t k = 0; k < cols; ++k) {
      const auto i = static_cast<std::size_t>(r * cols + k);
      const float q = std::clamp(std::nearbyint(std::clamp(w[i], -c, c) / s), -127.0f, 127.0f);
      t.q[i] = static_cast<std::int8_t>(q);
      const double e = static_cast<double>(w[i]) - static_cast<double>(q * s);
      sq += e * e;
    }
  }
  t.mse = w.empty() ? 0.0 : sq / static_cast<double>(w.size());
  return t;
}

QuantizedTensor passthrough(const std::string& name, const std::vector<std::int64_t>& shape, std::span<const float> w,
                            Scheme scheme) {
  QuantizedTensor t;
  t.name = name;
  t.shape = shape;
  t.scheme = scheme;
  double sq = 0.0;
  if (scheme == Scheme::fp16) {
    t.scales.resize(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
      t.scales[i] = io::float_to_half(w[i]);
      const double e = static_cast<double>(w[i]) - static_cast<double>(io::half_to_float(t.scales[i]));
      sq += e * e;
    }
  } else if (scheme == Scheme::fp32) {
    t.values.assign(w.begin(), w.end());
  } else {
    fail(ErrorKind::internal, "passthrough: ", name, " is not a passthrough scheme");
  }
  t.mse = w.empty() ? 0.0 : sq / static_cast<double>(w.size());
  return t;
}

double hessian_error(std::span<const float> w, std::span<const float> wq, std::int64_t rows, std::int64_t cols,
                     std::span<const double> h) {
  double total = 0.0;
  std::vector<double> d(static_cast<std::size_t>(cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c)
      d[static_cast<std::size_t>(c)] =
          static_cast<double>(w[static_cast<std::size_t>(r * cols + c)]) - wq[static_cast<std::size_t>(r * cols + c)];
    for (std::int64_t i = 0; i < cols; ++i) {
      double hi = 0.0;
      for (std::int64_t j = 0; j < cols; ++j) hi += h[static_cast<std::size_t>(i * cols + j)] * d[static_cast<std::size_t>(j)];
      total += d[static_cast<std::size_t>(i)] * hi;
    }
  }
  return total;
}

}  // namespace pgolf::exporter

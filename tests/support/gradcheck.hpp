#pragma once
// Finite-difference gradient checking in double precision.
//
// The 4-point central difference  f'(x) ~ (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h
// has truncation error O(h^4 f^(5)) and rounding error O(eps |f| / h). With h = 1e-3 and the
// O(1) values used in these tests both are below 1e-10, so the analytic gradient must agree
// to that order; the tests use a threshold of 1e-7 relative (see `relative_error`), far
// above the expected error yet far below the O(1) relative errors that a wrong sign, a
// missing term or a wrong index produce.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/rng.hpp"

namespace pgolf::test {

inline constexpr double kFdStep = 1e-3;
inline constexpr double kFdTolerance = 1e-7;

inline std::vector<double> random_vector(std::size_t n, std::uint64_t seed, double scale = 1.0, double offset = 0.0) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = offset + scale * rng.normal();
  return v;
}

// |a - n| / max(|a|, |n|, floor): relative for every gradient above `floor`, so that a
// missing factor in a small gradient is caught too; the floor keeps exactly-zero gradients
// (unused embedding rows, masked attention) from dividing finite-difference noise (~1e-13)
// by zero.
inline double relative_error(double analytic, double numeric, double floor = 1e-4) {
  return std::fabs(analytic - numeric) / std::max({std::fabs(analytic), std::fabs(numeric), floor});
}

// Numeric derivative of loss() with respect to values[i].
inline double numeric_derivative(std::vector<double>& values, std::size_t i, const std::function<double()>& loss,
                                 double h = kFdStep) {
  const double x = values[i];
  auto at = [&](double v) {
    values[i] = v;
    return loss();
  };
  const double d = (-at(x + 2 * h) + 8 * at(x + h) - 8 * at(x - h) + at(x - 2 * h)) / (12 * h);
  values[i] = x;
  return d;
}

struct GradCheckResult {
  double max_error = 0.0;
  std::size_t worst_index = 0;
  double worst_analytic = 0.0, worst_numeric = 0.0;
};

// Compares analytic[i] with the numeric derivative for every index (or `samples` evenly
// spread ones when samples > 0).
inline GradCheckResult check_gradient(std::vector<double>& values, const std::vector<double>& analytic,
                                      const std::function<double()>& loss, std::size_t samples = 0) {
  GradCheckResult r;
  const std::size_t n = values.size();
  const std::size_t count = samples == 0 || samples >= n ? n : samples;
  for (std::size_t k = 0; k < count; ++k) {
    const std::size_t i = count == n ? k : (k * 7919 + 13) % n;
    const double num = numeric_derivative(values, i, loss);
    const double err = relative_error(analytic[i], num);
    if (err >= r.max_error) {
      r.max_error = err;
      r.worst_index = i;
      r.worst_analytic = analytic[i];
      r.worst_numeric = num;
    }
  }
  return r;
}

}  // namespace pgolf::test

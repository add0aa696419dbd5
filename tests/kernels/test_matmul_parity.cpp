// The backend's row-major products through cuBLASLt (kernels/matmul.cu, on the emulator's
// cuBLASLt double) against the CPU reference (OpenBLAS): the transposed column-major calls
// must reproduce matmul_forward/backward and gemm. Both accumulate k float32 products in
// different orders, so the bound per element is 2 k u sum|terms| (u = 2^-24), the classic
// worst case of two recursive sums, checked against a float64 product.
#include <gtest/gtest.h>
#include <cublasLt.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "matmul.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::inputs;

std::vector<float> small_inputs(std::size_t n, std::uint32_t seed) {
  std::vector<float> v = inputs(n, seed);
  for (auto& x : v) x = std::fmod(x, 4.0f);  // no 1e30s: products must stay finite
  return v;
}

// |a - b| <= 2 k u bound[i] + tiny, element by element.
void expect_within(const std::vector<float>& cpu, const std::vector<float>& gpu, const std::vector<double>& bound, int k,
                   const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size());
  const double u = std::ldexp(1.0, -24);
  for (std::size_t i = 0; i < cpu.size(); ++i)
    ASSERT_LE(std::fabs(static_cast<double>(cpu[i]) - gpu[i]), 2.0 * k * u * bound[i] + 1e-30)
        << what << ": element " << i << " cpu " << cpu[i] << " cuBLASLt " << gpu[i];
}

class MatmulParity : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(cublasLtCreate(&lt_), CUBLAS_STATUS_SUCCESS); }
  void TearDown() override { cublasLtDestroy(lt_); }
  cublasLtHandle_t lt_ = nullptr;
};

TEST_F(MatmulParity, ForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const auto& [n, in, out] : {std::tuple{1, 1, 1}, std::tuple{5, 7, 3}, std::tuple{64, 48, 96}, std::tuple{33, 128, 17}}) {
    const auto N = static_cast<std::size_t>(n), I = static_cast<std::size_t>(in), O = static_cast<std::size_t>(out);
    const std::vector<float> x = small_inputs(N * I, 141), w = small_inputs(O * I, 142), dy = small_inputs(N * O, 143);
    const std::vector<float> y0 = small_inputs(N * O, 144), dx0 = small_inputs(N * I, 145), dw0 = small_inputs(O * I, 146);
    for (bool acc : {false, true}) {
      std::vector<float> y = y0, dx = dx0, dw = dw0;
      cpu.matmul_forward(y.data(), x.data(), w.data(), n, in, out, acc);
      cpu.matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), n, in, out, acc);
      Device dev;
      float *dY = dev.upload(y0), *dDx = dev.upload(dx0), *dDw = dev.upload(dw0);
      const float *dX = dev.upload(x), *dW = dev.upload(w), *dDy = dev.upload(dy);
      kernels::matmul_forward(lt_, dY, dX, dW, n, in, out, acc, nullptr);
      kernels::matmul_backward(lt_, dDx, dDw, dDy, dX, dW, n, in, out, acc, nullptr);
      // Bounds: sum of |terms| (plus the accumulated value) per output element.
      std::vector<double> by(N * O), bx(N * I), bw(O * I);
      for (std::size_t i = 0; i < N; ++i)
        for (std::size_t o = 0; o < O; ++o) {
          double s = acc ? std::fabs(y0[i * O + o]) : 0.0;
          for (std::size_t j = 0; j < I; ++j) s += std::fabs(static_cast<double>(x[i * I + j]) * w[o * I + j]);
          by[i * O + o] = s;
        }
      for (std::size_t i = 0; i < N; ++i)
        for (std::size_t j = 0; j < I; ++j) {
          double s = acc ? std::fabs(dx0[i * I + j]) : 0.0;
          for (std::size_t o = 0; o < O; ++o) s += std::fabs(static_cast<double>(dy[i * O + o]) * w[o * I + j]);
          bx[i * I + j] = s;
        }
      for (std::size_t o = 0; o < O; ++o)
        for (std::size_t j = 0; j < I; ++j) {
          double s = std::fabs(dw0[o * I + j]);
          for (std::size_t i = 0; i < N; ++i) s += std::fabs(static_cast<double>(dy[i * O + o]) * x[i * I + j]);
          bw[o * I + j] = s;
        }
      const std::string at = test::shape_label("", {n, in, out}, acc ? "accumulate" : "");
      expect_within(y, Device::download(dY, N * O), by, in + 1, "matmul_forward" + at);
      expect_within(dx, Device::download(dDx, N * I), bx, out + 1, "matmul_backward dx" + at);
      expect_within(dw, Device::download(dDw, O * I), bw, n + 1, "matmul_backward dw" + at);
    }
  }
}

TEST_F(MatmulParity, GemmMatchesTheCpuForEveryTransposeCombination) {
  backend::CpuOps<float> cpu;
  const int m = 6, n = 5, k = 7;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::vector<float> a = small_inputs(static_cast<std::size_t>(m * k), 151),
                               b = small_inputs(static_cast<std::size_t>(k * n), 152),
                               c0 = small_inputs(static_cast<std::size_t>(m * n), 153);
      std::vector<float> c = c0;
      cpu.gemm(c.data(), a.data(), b.data(), m, n, k, ta, tb, 1.5f, -0.5f);
      Device dev;
      float* dC = dev.upload(c0);
      kernels::gemm(lt_, dC, dev.upload(a), dev.upload(b), m, n, k, ta, tb, 1.5f, -0.5f, nullptr);
      std::vector<double> bound(static_cast<std::size_t>(m * n));
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double s = 0.5 * std::fabs(c0[static_cast<std::size_t>(i * n + j)]);
          for (int p = 0; p < k; ++p) {
            const float av = ta ? a[static_cast<std::size_t>(p * m + i)] : a[static_cast<std::size_t>(i * k + p)];
            const float bv = tb ? b[static_cast<std::size_t>(j * k + p)] : b[static_cast<std::size_t>(p * n + j)];
            s += 1.5 * std::fabs(static_cast<double>(av) * bv);
          }
          bound[static_cast<std::size_t>(i * n + j)] = s;
        }
      expect_within(c, Device::download(dC, c.size()), bound, k + 2,
                    std::string("gemm") + (ta ? " ta" : "") + (tb ? " tb" : ""));
    }
}

}  // namespace
}  // namespace pgolf

// Parity of the optimizer-side kernels (kernels/optim.cu, executed by the SIMT emulator) with
// the CPU reference: momentum, transposes and fake quantisation bit for bit; row
// normalisation within 2 ulps; the float64 sum of squares within 1e-15 relative (both sum in
// float64, in different orders).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "optim.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::expect_same;
using test::inputs;

std::string label(const char* what, int rows, int cols) { return test::shape_label(what, {rows, cols}); }

const int kShapes[][2] = {{1, 1}, {5, 31}, {64, 33}, {33, 64}, {128, 512}, {3, 1000}};

TEST(OptimParity, MuonMomentumMatchesTheCpuBitForBit) {
  backend::CpuOps<float> cpu;
  for (std::size_t n : {std::size_t{1}, std::size_t{257}, std::size_t{70000}}) {
    const std::vector<float> g = inputs(n, 81), buf0 = inputs(n, 82);
    for (bool nesterov : {false, true}) {
      std::vector<float> buf = buf0, u(n);
      cpu.muon_momentum(buf.data(), u.data(), g.data(), 0.95f, nesterov, n);
      Device dev;
      float *dBuf = dev.upload(buf0), *dU = dev.upload(std::vector<float>(n));
      kernels::muon_momentum(dBuf, dU, dev.upload(g), 0.95f, nesterov, n, nullptr);
      expect_same(buf, Device::download(dBuf, n), label(nesterov ? "muon buf nesterov" : "muon buf", 1, static_cast<int>(n)));
      expect_same(u, Device::download(dU, n), label(nesterov ? "muon u nesterov" : "muon u", 1, static_cast<int>(n)));
    }
  }
}

TEST(OptimParity, RowsTransposesSquaresAndFakeQuantMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const auto& shape : kShapes) {
    const int rows = shape[0], cols = shape[1];
    const std::size_t total = static_cast<std::size_t>(rows) * cols;
    std::vector<float> x = inputs(total, 91);
    // The first row falls below the eps floor (norm < 1e-7), so max(norm, eps) takes eps.
    for (int c = 0; c < cols; ++c) x[static_cast<std::size_t>(c)] = 1e-12f * static_cast<float>(c % 5);
    std::vector<float> normed = x, transposed(total), quant(total);
    cpu.normalize_rows(normed.data(), rows, cols, 1e-7f);
    cpu.transpose(transposed.data(), x.data(), rows, cols);
    // Fake quantisation of values in a trained range (the 1e30 test values would saturate).
    std::vector<float> w = inputs(total, 92);
    for (auto& v : w) v = std::fmod(v, 3.0f);
    cpu.fake_quant_int6(quant.data(), w.data(), rows, cols);
    const double squares = cpu.sum_squares(w.data(), total);

    Device dev;
    float* dNormed = dev.upload(x);
    float* dT = dev.upload(std::vector<float>(total));
    float* dQ = dev.upload(std::vector<float>(total));
    const float *dX = dev.upload(x), *dW = dev.upload(w);
    double* dSq = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dSq), sizeof(double)), cudaSuccess);
    kernels::normalize_rows(dNormed, rows, cols, 1e-7f, nullptr);
    kernels::transpose(dT, dX, rows, cols, nullptr);
    kernels::fake_quant_int6(dQ, dW, rows, cols, nullptr);
    kernels::sum_squares(dSq, dW, total, nullptr);
    double got = 0;
    ASSERT_EQ(cudaMemcpy(&got, dSq, sizeof got, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(cudaFree(dSq), cudaSuccess);

    expect_close(normed, Device::download(dNormed, total), 2, label("normalize_rows", rows, cols));
    expect_same(transposed, Device::download(dT, total), label("transpose", rows, cols));
    expect_same(quant, Device::download(dQ, total), label("fake_quant_int6", rows, cols));
    EXPECT_NEAR(got, squares, 1e-15 * squares) << label("sum_squares", rows, cols);
  }
}

}  // namespace
}  // namespace pgolf

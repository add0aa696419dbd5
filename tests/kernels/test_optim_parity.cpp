// Parity of the optimizer-side kernels (kernels/optim.cu, executed by the SIMT emulator) with
// the CPU reference: momentum, transposes and fake quantisation bit for bit; row
// normalisation within 2 ulps; the float64 sum of squares within 1e-15 relative (both sum in
// float64, in different orders).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "elementwise.cuh"
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
      const float mu = 0.95f;
      cpu.muon_momentum(buf.data(), u.data(), g.data(), &mu, nesterov, n, nullptr);
      Device dev;
      float *dBuf = dev.upload(buf0), *dU = dev.upload(std::vector<float>(n));
      kernels::muon_momentum(dBuf, dU, dev.upload(g), dev.upload(std::vector<float>{mu}), nesterov, n, nullptr, nullptr);
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


// The capture-safe step ops (per-step values on the device): the guard, clipping, Newton-Schulz
// normalisation and the guarded updates match the CPU bit for bit, and a set skip flag leaves
// every state untouched on both.
TEST(OptimParity, DeviceScalarStepOpsMatchTheCpuAndTheSkipFlagStopsEveryUpdate) {
  backend::CpuOps<float> cpu;
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  // The guard: {loss, sum of squares, max_norm} -> {skip, clipping coefficient}.
  struct GuardCase {
    double loss, sum_sq, max_norm;
  };
  for (const GuardCase& gc : {GuardCase{2.5, 4.0, 1.0}, GuardCase{2.5, 0.25, 1.0}, GuardCase{2.5, 4.0, 0.0},
                              GuardCase{nan, 4.0, 1.0}, GuardCase{2.5, inf, 1.0}, GuardCase{inf, nan, 1.0}}) {
    std::array<double, backend::kStepStateValues> cpu_state{};
    cpu.step_guard(cpu_state.data(), &gc.loss, &gc.sum_sq, gc.max_norm);
    Device dev;
    double* d_state = dev.upload(std::vector<double>(backend::kStepStateValues, 0.0));
    kernels::step_guard(d_state, dev.upload(std::vector<double>{gc.loss}), dev.upload(std::vector<double>{gc.sum_sq}),
                        gc.max_norm, nullptr);
    const auto got = Device::download(d_state, backend::kStepStateValues);
    const std::string what = "guard loss " + std::to_string(gc.loss) + " sum_sq " + std::to_string(gc.sum_sq);
    EXPECT_EQ(got[backend::kStepSkip], cpu_state[backend::kStepSkip]) << what;
    EXPECT_EQ(got[backend::kStepClipCoef], cpu_state[backend::kStepClipCoef]) << what;
    const bool finite = std::isfinite(gc.loss) && std::isfinite(gc.sum_sq);
    EXPECT_EQ(cpu_state[backend::kStepSkip], finite ? 0.0 : 1.0) << what;
    const double coef = gc.max_norm > 0 && std::isfinite(gc.sum_sq) ? std::min(1.0, gc.max_norm / (std::sqrt(gc.sum_sq) + 1e-6)) : 1.0;
    EXPECT_EQ(cpu_state[backend::kStepClipCoef], coef) << what;
  }

  const std::size_t n = 70000;
  const std::vector<float> x = inputs(n, 111), y0 = inputs(n, 112), g = inputs(n, 113);
  for (double skip : {0.0, 1.0}) {
    const std::string tag = skip != 0.0 ? " (skipped)" : "";
    const std::array<double, backend::kStepStateValues> state = {skip, 0.375};
    const std::array<float, 2> ab = {0.97f, -0.0125f};
    const std::array<float, 3> adam = backend::adamw_constants<float>(0.003, 0.9, 0.95, 0.04, 3);
    const float mu = 0.95f;
    const double sum_sq = 12345.678;
    std::vector<float> clipped = x, normed = x, axpby = y0, p = y0, m = x, v(n, 0.5f), buf = x, u(n);
    cpu.clip_scale(clipped.data(), n, state.data());
    cpu.scale_by_inverse_norm(normed.data(), n, &sum_sq, 1e-7);
    cpu.axpby_step(axpby.data(), x.data(), ab.data(), n, &state[backend::kStepSkip]);
    cpu.adamw_step(p.data(), g.data(), m.data(), v.data(), n, adam.data(), 0.9f, 0.95f, 1e-8f, &state[backend::kStepSkip]);
    cpu.muon_momentum(buf.data(), u.data(), g.data(), &mu, true, n, &state[backend::kStepSkip]);
    double loss = 1.5;
    const float loss_sum = 700.25f;
    cpu.accumulate_loss(&loss, &loss_sum, 256.0);

    Device dev;
    const double* d_state = dev.upload(std::vector<double>(state.begin(), state.end()));
    float *d_clipped = dev.upload(x), *d_normed = dev.upload(x), *d_axpby = dev.upload(y0), *d_p = dev.upload(y0),
          *d_m = dev.upload(x), *d_v = dev.upload(std::vector<float>(n, 0.5f)), *d_buf = dev.upload(x),
          *d_u = dev.upload(std::vector<float>(n));
    const float *d_x = dev.upload(x), *d_g = dev.upload(g);
    double* d_loss = dev.upload(std::vector<double>{1.5});
    kernels::clip_scale(d_clipped, n, d_state, nullptr);
    kernels::scale_by_inverse_norm(d_normed, n, dev.upload(std::vector<double>{sum_sq}), 1e-7, nullptr);
    kernels::axpby_step(d_axpby, d_x, dev.upload(std::vector<float>(ab.begin(), ab.end())), n, d_state + backend::kStepSkip,
                        nullptr);
    kernels::adamw_step(d_p, d_g, d_m, d_v, n, dev.upload(std::vector<float>(adam.begin(), adam.end())), 0.9f, 0.95f, 1e-8f,
                        d_state + backend::kStepSkip, nullptr);
    kernels::muon_momentum(d_buf, d_u, d_g, dev.upload(std::vector<float>{mu}), true, n, d_state + backend::kStepSkip,
                           nullptr);
    kernels::accumulate_loss(d_loss, dev.upload(std::vector<float>{loss_sum}), 256.0, nullptr);

    expect_same(clipped, Device::download(d_clipped, n), "clip_scale" + tag);
    expect_same(normed, Device::download(d_normed, n), "scale_by_inverse_norm" + tag);
    expect_same(axpby, Device::download(d_axpby, n), "axpby_step" + tag);
    expect_same(p, Device::download(d_p, n), "adamw_step p" + tag);
    expect_same(m, Device::download(d_m, n), "adamw_step m" + tag);
    expect_same(buf, Device::download(d_buf, n), "muon_momentum buf" + tag);
    EXPECT_EQ(Device::download(d_loss, 1)[0], loss);
    EXPECT_EQ(loss, 1.5 + 700.25 / 256.0);
    // What the flag does, on the CPU reference: skipped, nothing moves; applied, everything does.
    if (skip != 0.0) {
      EXPECT_EQ(axpby, y0);
      EXPECT_EQ(p, y0);
      EXPECT_EQ(buf, x);
      EXPECT_EQ(clipped, x);
    } else {
      EXPECT_NE(axpby, y0);
      EXPECT_NE(p, y0);
      EXPECT_NE(buf, x);
      EXPECT_EQ(clipped[1], x[1] * 0.375f);
    }
  }
}

}  // namespace
}  // namespace pgolf

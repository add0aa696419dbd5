// Parity of the elementwise kernel family (kernels/elementwise.cu, executed by the SIMT
// emulator) with the CPU reference backend, op by op: the same inputs (random values plus
// zeros, signed zeros, subnormals and large magnitudes) in device memory from the runtime
// double (guard zones checked after each launch), sizes around the block size and beyond
// one grid, NaN/Inf checks and a bit-for-bit comparison (the emulated build computes the
// same float operations in the same order; on a GPU, nvcc's FMA contraction would allow
// differences of an ulp, which the GPU parity run will bound).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "elementwise.cuh"
#include "kernels/parity_support.hpp"

namespace pgolf {
namespace {

using test::Device;
using test::expect_same;
using test::inputs;

const std::size_t kSizes[] = {1, 255, 256, 257, 3001, 70000};

TEST(ElementwiseParity, AxpbyScaleAndAddMatchTheCpuBitForBit) {
  backend::CpuOps<float> cpu;
  for (std::size_t n : kSizes) {
    const std::vector<float> x = inputs(n, 1), y0 = inputs(n, 2);
    Device dev;
    float* dy = dev.upload(y0);
    const float* dx = dev.upload(x);
    std::vector<float> y = y0;
    cpu.axpby(y.data(), x.data(), 0.75f, -1.25f, n);
    kernels::axpby(dy, dx, 0.75f, -1.25f, n, nullptr);
    expect_same(y, Device::download(dy, n), "axpby n=" + std::to_string(n));
    cpu.scale_values(y.data(), 0.3f, n);
    kernels::scale_values(dy, 0.3f, n, nullptr);
    expect_same(y, Device::download(dy, n), "scale_values n=" + std::to_string(n));
    cpu.add_into(y.data(), x.data(), n);
    kernels::add_into(dy, dx, n, nullptr);
    expect_same(y, Device::download(dy, n), "add_into n=" + std::to_string(n));
  }
}

TEST(ElementwiseParity, LeakyReluSquaredForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (std::size_t n : kSizes) {
    const std::vector<float> h = inputs(n, 3), dz = inputs(n, 4);
    Device dev;
    const float* dh_in = dev.upload(h);
    const float* ddz = dev.upload(dz);
    float* dout = dev.upload(std::vector<float>(n, 0.0f));
    std::vector<float> out(n);
    cpu.leaky_relu_sq_forward(out.data(), h.data(), 0.5f, n);
    kernels::leaky_relu_sq_forward(dout, dh_in, 0.5f, n, nullptr);
    expect_same(out, Device::download(dout, n), "leaky_relu_sq_forward n=" + std::to_string(n));
    cpu.leaky_relu_sq_backward(out.data(), dz.data(), h.data(), 0.5f, n);
    kernels::leaky_relu_sq_backward(dout, ddz, dh_in, 0.5f, n, nullptr);
    expect_same(out, Device::download(dout, n), "leaky_relu_sq_backward n=" + std::to_string(n));
  }
}

TEST(ElementwiseParity, SgdAndAdamwStepsMatchTheCpuOverSeveralSteps) {
  backend::CpuOps<float> cpu;
  for (std::size_t n : kSizes) {
    std::vector<float> p = inputs(n, 5), buf(n, 0.0f), m(n, 0.0f), v(n, 0.0f);
    Device dev;
    float* dp = dev.upload(p);
    float* dbuf = dev.upload(buf);
    float* dm = dev.upload(m);
    float* dv = dev.upload(v);
    for (std::int64_t t = 1; t <= 3; ++t) {
      const std::vector<float> g = inputs(n, 100 + static_cast<std::uint32_t>(t));
      const float* dg = dev.upload(g);
      cpu.sgd_momentum_update(p.data(), g.data(), buf.data(), n, 0.01f, 0.9f);
      kernels::sgd_momentum_update(dp, dg, dbuf, n, 0.01f, 0.9f, nullptr);
      cpu.adamw_update(p.data(), g.data(), m.data(), v.data(), n, 0.003f, 0.9f, 0.95f, 1e-8f, 0.04f, t);
      const auto c = backend::adamw_constants<float>(0.003f, 0.9f, 0.95f, 0.04f, t);
      kernels::adamw_update(dp, dg, dm, dv, n, c[0], c[1], c[2], 0.9f, 0.95f, 1e-8f, nullptr);
    }
    const std::string at = " n=" + std::to_string(n);
    expect_same(p, Device::download(dp, n), "parameters" + at);
    expect_same(buf, Device::download(dbuf, n), "momentum" + at);
    expect_same(m, Device::download(dm, n), "adam m" + at);
    expect_same(v, Device::download(dv, n), "adam v" + at);
  }
}

}  // namespace
}  // namespace pgolf

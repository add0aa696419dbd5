// Parity of the residual-stream kernels (kernels/residual.cu, executed by the SIMT emulator)
// with the CPU reference: elementwise outputs bit for bit, parameter gradients (float64 sums
// in another order, accumulated into existing values) within 2 ulps.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "residual.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::expect_same;
using test::inputs;

struct Shape {
  int n, dim;
};
const Shape kShapes[] = {{1, 1}, {3, 7}, {64, 128}, {33, 300}, {5, 1000}};

std::string label(const char* what, Shape s) { return test::shape_label(what, {s.n, s.dim}); }

TEST(ResidualParity, AddScaledForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.n) * s.dim;
    const std::vector<float> x = inputs(total, 31), y0 = inputs(total, 32), dy = inputs(total, 33);
    for (bool two_scalars : {false, true}) {
      const std::vector<float> s1 = {0.8f}, s2 = {-1.3f}, grads0 = {0.25f, -0.5f};
      std::vector<float> y = y0, dx = y0, grads = grads0;
      cpu.add_scaled_forward(y.data(), x.data(), s1.data(), two_scalars ? s2.data() : nullptr, total);
      cpu.add_scaled_backward(dx.data(), &grads[0], two_scalars ? &grads[1] : nullptr, dy.data(), x.data(), s1.data(),
                              two_scalars ? s2.data() : nullptr, total, true);
      Device dev;
      float* dY = dev.upload(y0);
      float* dDX = dev.upload(y0);
      float* dG = dev.upload(grads0);
      const float *dX = dev.upload(x), *dDY = dev.upload(dy), *dS1 = dev.upload(s1), *dS2 = dev.upload(s2);
      kernels::add_scaled_forward(dY, dX, dS1, two_scalars ? dS2 : nullptr, total, nullptr);
      kernels::add_scaled_backward(dDX, dG, two_scalars ? dG + 1 : nullptr, dDY, dX, dS1, two_scalars ? dS2 : nullptr,
                                   total, true, nullptr);
      expect_same(y, Device::download(dY, total), label("add_scaled_forward", s));
      expect_same(dx, Device::download(dDX, total), label("add_scaled_backward dx", s));
      expect_close(grads, Device::download(dG, 2), 2, label("add_scaled_backward ds", s));
    }
  }
}

TEST(ResidualParity, ResidualScaleAndResidMixMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.n) * s.dim, d = static_cast<std::size_t>(s.dim);
    const std::vector<float> base = inputs(total, 41), y = inputs(total, 42), dout = inputs(total, 43);
    const std::vector<float> scale = inputs(d, 44), mix = inputs(2 * d, 45), x0 = inputs(total, 46);
    const std::vector<float> dscale0 = inputs(d, 47), dmix0 = inputs(2 * d, 48), dx00 = inputs(total, 49);
    std::vector<float> out(total), dy(total), dscale = dscale0, xin(total), dx(total), dx0 = dx00, dmix = dmix0;
    cpu.residual_scale_forward(out.data(), base.data(), y.data(), scale.data(), s.n, s.dim);
    cpu.residual_scale_backward(dy.data(), dscale.data(), dout.data(), y.data(), scale.data(), s.n, s.dim);
    cpu.resid_mix_forward(xin.data(), y.data(), x0.data(), mix.data(), s.n, s.dim);
    cpu.resid_mix_backward(dx.data(), dx0.data(), dmix.data(), dout.data(), y.data(), x0.data(), mix.data(), s.n, s.dim);

    Device dev;
    const float *dBase = dev.upload(base), *dY = dev.upload(y), *dDout = dev.upload(dout), *dScale = dev.upload(scale),
                *dMix = dev.upload(mix), *dX0 = dev.upload(x0);
    float *dOut = dev.upload(std::vector<float>(total)), *dDy = dev.upload(std::vector<float>(total)),
          *dDscale = dev.upload(dscale0), *dXin = dev.upload(std::vector<float>(total)),
          *dDx = dev.upload(std::vector<float>(total)), *dDx0 = dev.upload(dx00), *dDmix = dev.upload(dmix0);
    kernels::residual_scale_forward(dOut, dBase, dY, dScale, s.n, s.dim, nullptr);
    kernels::residual_scale_backward(dDy, dDscale, dDout, dY, dScale, s.n, s.dim, nullptr);
    kernels::resid_mix_forward(dXin, dY, dX0, dMix, s.n, s.dim, nullptr);
    kernels::resid_mix_backward(dDx, dDx0, dDmix, dDout, dY, dX0, dMix, s.n, s.dim, nullptr);
    expect_same(out, Device::download(dOut, total), label("residual_scale_forward", s));
    expect_same(dy, Device::download(dDy, total), label("residual_scale_backward dy", s));
    expect_close(dscale, Device::download(dDscale, d), 2, label("residual_scale_backward dscale", s));
    expect_same(xin, Device::download(dXin, total), label("resid_mix_forward", s));
    expect_same(dx, Device::download(dDx, total), label("resid_mix_backward dx", s));
    expect_same(dx0, Device::download(dDx0, total), label("resid_mix_backward dx0", s));
    expect_close(dmix, Device::download(dDmix, 2 * d), 2, label("resid_mix_backward dmix", s));
  }
}

}  // namespace
}  // namespace pgolf

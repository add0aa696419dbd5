// Parity of the RMS-norm kernels (kernels/norm.cu, executed by the SIMT emulator) with the
// CPU reference. Both accumulate the row sums in float64, in different orders, so the float
// results may differ in the last bit: the bound is 2 ulps per element (observed: printed),
// far below anything a wrong formula, a missing barrier or a lost row element would give.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "norm.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::inputs;

struct Shape {
  int n, dim;
};
const Shape kShapes[] = {{1, 1}, {3, 31}, {5, 128}, {7, 256}, {4, 257}, {2, 512}, {3, 1536}};

std::string label(const char* what, Shape s, const char* detail) { return test::shape_label(what, {s.n, s.dim}, detail); }

TEST(NormParity, RmsnormForwardMatchesTheCpuWithinTwoUlps) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.n) * s.dim;
    const std::vector<float> x = inputs(total, 21);
    Device dev;
    const float* dx = dev.upload(x);
    float* dy = dev.upload(std::vector<float>(total, 0.0f));
    float* dr = dev.upload(std::vector<float>(static_cast<std::size_t>(s.n), 0.0f));
    std::vector<float> y(total), r(static_cast<std::size_t>(s.n));
    for (float mult : {1.0f, 0.7f}) {
      cpu.rmsnorm_forward(y.data(), r.data(), x.data(), s.n, s.dim, mult);
      kernels::rmsnorm_forward(dy, dr, dx, s.n, s.dim, mult, nullptr);
      const char* m = mult == 1.0f ? "multiplier 1" : "multiplier 0.7";
      expect_close(y, Device::download(dy, total), 2, label("rmsnorm_forward y", s, m));
      expect_close(r, Device::download(dr, static_cast<std::size_t>(s.n)), 2, label("rmsnorm_forward rstd", s, m));
    }
  }
}

TEST(NormParity, RmsnormBackwardMatchesTheCpuWithinTwoUlpsWithAndWithoutAccumulation) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.n) * s.dim;
    const std::vector<float> x = inputs(total, 22), g = inputs(total, 23), base = inputs(total, 24);
    std::vector<float> y(total), r(static_cast<std::size_t>(s.n));
    cpu.rmsnorm_forward(y.data(), r.data(), x.data(), s.n, s.dim, 1.0f);
    for (bool accumulate : {false, true}) {
      Device dev;
      const float *dxin = dev.upload(x), *dg = dev.upload(g), *dr = dev.upload(r);
      float* ddx = dev.upload(base);
      std::vector<float> out = base;
      cpu.rmsnorm_backward(out.data(), g.data(), x.data(), r.data(), s.n, s.dim, 0.7f, accumulate);
      kernels::rmsnorm_backward(ddx, dg, dxin, dr, s.n, s.dim, 0.7f, accumulate, nullptr);
      expect_close(out, Device::download(ddx, total), 2, label("rmsnorm_backward", s, accumulate ? "+=" : "="));
    }
  }
}

}  // namespace
}  // namespace pgolf

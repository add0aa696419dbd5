// Parity of the token-mixing, skip and lane kernels (kernels/mixing.cu, executed by the SIMT
// emulator) with the CPU reference: elementwise outputs bit for bit, parameter gradients
// (float64 sums in another order, accumulated into existing values) within 2 ulps.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"
#include "mixing.cuh"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::expect_same_math;
using test::inputs;

struct Shape {
  int batch, seq, dim;
};
const Shape kShapes[] = {{1, 1, 1}, {2, 5, 7}, {3, 64, 128}, {2, 33, 300}};

std::string label(const char* what, Shape s) { return test::shape_label(what, {s.batch, s.seq, s.dim}); }

TEST(MixingParity, SmearGateForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.batch) * s.seq * s.dim, d = static_cast<std::size_t>(s.dim);
    const std::vector<float> x = inputs(total, 51), dy = inputs(total, 52), gate = inputs(d, 53), dgate0 = inputs(d, 54);
    std::vector<float> y(total), dx(total), dgate = dgate0;
    cpu.smear_forward(y.data(), x.data(), gate.data(), s.batch, s.seq, s.dim);
    cpu.smear_backward(dx.data(), dgate.data(), dy.data(), x.data(), gate.data(), s.batch, s.seq, s.dim);
    Device dev;
    const float *dX = dev.upload(x), *dDy = dev.upload(dy), *dGate = dev.upload(gate);
    float *dY = dev.upload(std::vector<float>(total)), *dDx = dev.upload(std::vector<float>(total)),
          *dDgate = dev.upload(dgate0);
    kernels::smear_forward(dY, dX, dGate, s.batch, s.seq, s.dim, nullptr);
    kernels::smear_backward(dDx, dDgate, dDy, dX, dGate, s.batch, s.seq, s.dim, nullptr);
    expect_same_math(y, Device::download(dY, total), label("smear_forward", s));
    expect_same_math(dx, Device::download(dDx, total), label("smear_backward dx", s));
    expect_close(dgate, Device::download(dDgate, d), 2, label("smear_backward dgate", s));
  }
}

TEST(MixingParity, SkipForwardAndBackwardMatchTheCpuWithAndWithoutAGate) {
  backend::CpuOps<float> cpu;
  for (const Shape s : kShapes) {
    const int n = s.batch * s.seq;
    const std::size_t total = static_cast<std::size_t>(n) * s.dim, d = static_cast<std::size_t>(s.dim);
    const std::vector<float> x0 = inputs(total, 61), src = inputs(total, 62), w = inputs(d, 63), gate = inputs(d, 64);
    const std::vector<float> dout = inputs(total, 65), ds0 = inputs(total, 66), dw0 = inputs(d, 67), dg0 = inputs(d, 68);
    for (bool gated : {false, true}) {
      std::vector<float> x = x0, dx = dout, ds = ds0, dw = dw0, dg = dg0;
      cpu.skip_forward(x.data(), src.data(), w.data(), gated ? gate.data() : nullptr, n, s.dim);
      cpu.skip_backward(dx.data(), ds.data(), dw.data(), gated ? dg.data() : nullptr, x0.data(), src.data(), w.data(),
                        gated ? gate.data() : nullptr, n, s.dim);
      Device dev;
      const float *dS = dev.upload(src), *dW = dev.upload(w), *dGate = dev.upload(gate), *dX0 = dev.upload(x0);
      float *dX = dev.upload(x0), *dDx = dev.upload(dout), *dDs = dev.upload(ds0), *dDw = dev.upload(dw0),
            *dDg = dev.upload(dg0);
      kernels::skip_forward(dX, dS, dW, gated ? dGate : nullptr, n, s.dim, nullptr);
      kernels::skip_backward(dDx, dDs, dDw, gated ? dDg : nullptr, dX0, dS, dW, gated ? dGate : nullptr, n, s.dim, nullptr);
      const char* g = gated ? " gated" : "";
      expect_same_math(x, Device::download(dX, total), label("skip_forward", s) + g);
      expect_same_math(dx, Device::download(dDx, total), label("skip_backward dx", s) + g);
      expect_same_math(ds, Device::download(dDs, total), label("skip_backward ds", s) + g);
      expect_close(dw, Device::download(dDw, d), 2, label("skip_backward dw", s) + g);
      expect_close(dg, Device::download(dDg, d), 2, label("skip_backward dgate", s) + g);
    }
  }
}

TEST(MixingParity, LaneMergeForwardAndBackwardMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (std::size_t n : {std::size_t{1}, std::size_t{300}, std::size_t{70000}}) {
    const std::vector<float> a = inputs(n, 71), b = inputs(n, 72), dout = inputs(n, 73), m = {0.3f}, dm0 = {0.1f};
    std::vector<float> out(n), da(n), db(n), dm = dm0;
    cpu.lane_merge_forward(out.data(), a.data(), b.data(), m.data(), n);
    cpu.lane_merge_backward(da.data(), db.data(), dm.data(), dout.data(), a.data(), b.data(), m.data(), n);
    Device dev;
    const float *dA = dev.upload(a), *dB = dev.upload(b), *dDout = dev.upload(dout), *dM = dev.upload(m);
    float *dOut = dev.upload(std::vector<float>(n)), *dDa = dev.upload(std::vector<float>(n)),
          *dDb = dev.upload(std::vector<float>(n)), *dDm = dev.upload(dm0);
    kernels::lane_merge_forward(dOut, dA, dB, dM, n, nullptr);
    kernels::lane_merge_backward(dDa, dDb, dDm, dDout, dA, dB, dM, n, nullptr);
    const Shape as_shape{1, 1, static_cast<int>(n)};
    expect_same_math(out, Device::download(dOut, n), label("lane_merge_forward", as_shape));
    expect_same_math(da, Device::download(dDa, n), label("lane_merge_backward da", as_shape));
    expect_same_math(db, Device::download(dDb, n), label("lane_merge_backward db", as_shape));
    expect_close(dm, Device::download(dDm, 1), 2, label("lane_merge_backward dm", as_shape));
  }
}

}  // namespace
}  // namespace pgolf

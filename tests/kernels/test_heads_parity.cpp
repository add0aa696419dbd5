// Parity of the per-head attention helpers (kernels/heads.cu, executed by the SIMT emulator)
// with the CPU reference: RoPE (forward and inverse), head gains and XSA bit for bit (the
// same operations in the same order), the gain gradient within 2 ulps (float64 sums in
// another order); the fused q/k preparation against the CPU's composition.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.hpp"
#include "heads.cuh"
#include "kernels/parity_support.hpp"

namespace pgolf {
namespace {

using test::Device;
using test::expect_close;
using test::expect_same;
using test::inputs;

struct Shape {
  int rows, seq, heads, kv_heads, hd, rope_dims;
};
const Shape kShapes[] = {{1, 1, 1, 1, 2, 2}, {6, 3, 4, 2, 8, 4}, {64, 16, 8, 4, 64, 16}, {30, 10, 6, 3, 32, 32}};

std::string label(const char* what, const Shape& s) {
  return test::shape_label(what, {s.rows, s.heads, s.hd});
}

TEST(HeadsParity, RopeAndHeadGainMatchTheCpu) {
  backend::CpuOps<float> cpu;
  for (const Shape& s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.rows) * s.heads * s.hd;
    const int half = s.rope_dims / 2;
    std::vector<float> cosv(static_cast<std::size_t>(s.seq * half)), sinv(cosv.size());
    for (std::size_t i = 0; i < cosv.size(); ++i) {
      cosv[i] = std::cos(0.37f * static_cast<float>(i));
      sinv[i] = std::sin(0.37f * static_cast<float>(i));
    }
    const std::vector<float> x = inputs(total, 121), dy = inputs(total, 122), gain = inputs(static_cast<std::size_t>(s.heads), 123),
                             dgain0 = inputs(static_cast<std::size_t>(s.heads), 124);
    for (bool inverse : {false, true}) {
      std::vector<float> r = x;
      cpu.rope_apply(r.data(), cosv.data(), sinv.data(), s.rows, s.seq, s.heads, s.hd, s.rope_dims, inverse);
      Device dev;
      float* dR = dev.upload(x);
      kernels::rope_apply(dR, dev.upload(cosv), dev.upload(sinv), s.rows, s.seq, s.heads, s.hd, s.rope_dims, inverse,
                          nullptr);
      expect_same(r, Device::download(dR, total), label(inverse ? "rope inverse" : "rope", s));
    }
    std::vector<float> y(total), dx(total), dgain = dgain0;
    cpu.head_gain_forward(y.data(), x.data(), gain.data(), s.rows, s.heads, s.hd);
    cpu.head_gain_backward(dx.data(), dgain.data(), dy.data(), x.data(), gain.data(), s.rows, s.heads, s.hd);
    Device dev;
    const float *dX = dev.upload(x), *dGain = dev.upload(gain), *dDy = dev.upload(dy);
    float *dY = dev.upload(std::vector<float>(total)), *dDx = dev.upload(std::vector<float>(total)),
          *dDgain = dev.upload(dgain0);
    kernels::head_gain_forward(dY, dX, dGain, s.rows, s.heads, s.hd, nullptr);
    kernels::head_gain_backward(dDx, dDgain, dDy, dX, dGain, s.rows, s.heads, s.hd, nullptr);
    expect_same(y, Device::download(dY, total), label("head_gain_forward", s));
    expect_same(dx, Device::download(dDx, total), label("head_gain_backward dx", s));
    expect_close(dgain, Device::download(dDgain, dgain.size()), 2, label("head_gain_backward dgain", s));
  }
}

TEST(HeadsParity, XsaForwardAndBackwardMatchTheCpuIncludingAZeroValueRow) {
  backend::CpuOps<float> cpu;
  for (const Shape& s : kShapes) {
    const std::size_t total = static_cast<std::size_t>(s.rows) * s.heads * s.hd;
    const std::size_t kv_total = static_cast<std::size_t>(s.rows) * s.kv_heads * s.hd;
    const std::vector<float> y = inputs(total, 131), dout = inputs(total, 132), dv0 = inputs(kv_total, 134);
    std::vector<float> v = inputs(kv_total, 133);
    for (int e = 0; e < s.hd; ++e) v[static_cast<std::size_t>(e)] = 0.0f;  // |v| clamped at 1e-12
    std::vector<float> out(total), dy(total), dv = dv0;
    cpu.xsa_forward(out.data(), y.data(), v.data(), s.rows, s.heads, s.kv_heads, s.hd);
    cpu.xsa_backward(dy.data(), dv.data(), dout.data(), y.data(), v.data(), s.rows, s.heads, s.kv_heads, s.hd);
    Device dev;
    const float *dYin = dev.upload(y), *dV = dev.upload(v), *dDout = dev.upload(dout);
    float *dOut = dev.upload(std::vector<float>(total)), *dDy = dev.upload(std::vector<float>(total)),
          *dDv = dev.upload(dv0);
    kernels::xsa_forward(dOut, dYin, dV, s.rows, s.heads, s.kv_heads, s.hd, nullptr);
    kernels::xsa_backward(dDy, dDv, dDout, dYin, dV, s.rows, s.heads, s.kv_heads, s.hd, nullptr);
    expect_same(out, Device::download(dOut, total), label("xsa_forward", s));
    expect_same(dy, Device::download(dDy, total), label("xsa_backward dy", s));
    expect_same(dv, Device::download(dDv, kv_total), label("xsa_backward dv", s));
  }
}

// The fused q/k preparation (FusedOp::qk_prep) against the CPU's composition of rmsnorm,
// rope_apply and head_gain, with and without a gain; its backward writes dx over dout on the
// device. The norm's float64 sums run in another order, so the bound is 2 ulps as for
// rmsnorm, and 2 ulps of each output's largest value for the backward's dx, whose
// d - x * k cancels.
TEST(HeadsParity, FusedQkPrepMatchesTheCpuComposition) {
  backend::CpuOps<float> cpu;
  for (const Shape& s : kShapes) {
    const int n = s.rows * s.heads, half = s.rope_dims / 2;
    const std::size_t total = static_cast<std::size_t>(n) * s.hd;
    std::vector<float> cosv(static_cast<std::size_t>(s.seq * half)), sinv(cosv.size());
    for (std::size_t i = 0; i < cosv.size(); ++i) {
      cosv[i] = std::cos(0.41f * static_cast<float>(i));
      sinv[i] = std::sin(0.41f * static_cast<float>(i));
    }
    const std::vector<float> x = inputs(total, 141), dout = inputs(total, 142), gain = inputs(static_cast<std::size_t>(s.heads), 143),
                             dgain0 = inputs(static_cast<std::size_t>(s.heads), 144);
    for (bool with_gain : {true, false}) {
      const std::string tag = with_gain ? "qk_prep (q)" : "qk_prep (k)";
      // The composition on the CPU.
      std::vector<float> normed(total), rstd(static_cast<std::size_t>(n)), out(total);
      cpu.rmsnorm_forward(normed.data(), rstd.data(), x.data(), n, s.hd, 1.0f);
      cpu.rope_apply(normed.data(), cosv.data(), sinv.data(), s.rows, s.seq, s.heads, s.hd, s.rope_dims, false);
      if (with_gain) cpu.head_gain_forward(out.data(), normed.data(), gain.data(), s.rows, s.heads, s.hd);
      std::vector<float> d(total), dx(total), dgain = dgain0;
      if (with_gain) {
        cpu.head_gain_backward(d.data(), dgain.data(), dout.data(), normed.data(), gain.data(), s.rows, s.heads, s.hd);
      } else {
        d = dout;
      }
      cpu.rope_apply(d.data(), cosv.data(), sinv.data(), s.rows, s.seq, s.heads, s.hd, s.rope_dims, true);
      cpu.rmsnorm_backward(dx.data(), d.data(), x.data(), rstd.data(), n, s.hd, 1.0f, false);

      Device dev;
      const float *dX = dev.upload(x), *dCos = dev.upload(cosv), *dSin = dev.upload(sinv);
      const float* dGain = with_gain ? dev.upload(gain) : nullptr;
      float *dNormed = dev.upload(std::vector<float>(total)), *dRstd = dev.upload(std::vector<float>(rstd.size())),
            *dOut = dev.upload(std::vector<float>(total)), *dD = dev.upload(dout), *dDgain = dev.upload(dgain0);
      kernels::qk_prep_forward(dNormed, dOut, dRstd, dX, dGain, dCos, dSin, s.rows, s.seq, s.heads, s.hd, s.rope_dims,
                               nullptr);
      // The backward from the kernel's own forward outputs, dx written over dout.
      kernels::qk_prep_backward(dD, dDgain, dD, dX, dNormed, dRstd, dGain, dCos, dSin, s.rows, s.seq, s.heads, s.hd,
                                s.rope_dims, nullptr);
      expect_close(normed, Device::download(dNormed, total), 2, label((tag + " normed").c_str(), s));
      expect_close(rstd, Device::download(dRstd, rstd.size()), 2, label((tag + " rstd").c_str(), s));
      if (with_gain) {
        expect_close(out, Device::download(dOut, total), 2, label((tag + " out").c_str(), s));
        expect_close(dgain, Device::download(dDgain, dgain.size()), 2, label((tag + " dgain").c_str(), s));
      } else {
        expect_same(std::vector<float>(total), Device::download(dOut, total), label((tag + " out untouched").c_str(), s));
        expect_same(dgain0, Device::download(dDgain, dgain.size()), label((tag + " dgain untouched").c_str(), s));
      }
      expect_close(dx, Device::download(dD, total), 2, label((tag + " dx").c_str(), s), true);
    }
  }
}

}  // namespace
}  // namespace pgolf

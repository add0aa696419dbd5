// Parity of the reference-grade attention kernels (kernels/attention.cu, executed by the
// SIMT emulator) with the CPU reference, bit for bit: both run the same float operations in
// the same order (scores accumulated over the head dimension in order, float64 softmax sums,
// the backward's key/value gradients accumulated over heads and queries in order).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "attention.cuh"
#include "backend/cpu/cpu_ops.hpp"
#include "kernels/parity_support.hpp"

namespace pgolf {
namespace {

using test::Device;
using test::expect_same_math;
using test::inputs;

struct Shape {
  int batch, seq, heads, kv_heads, hd;
};

std::vector<float> activations(std::size_t n, std::uint32_t seed) {
  std::vector<float> v = inputs(n, seed);
  for (auto& x : v) x = std::fmod(x, 3.0f);  // attention inputs of a trained model's size
  return v;
}

TEST(AttentionParity, ForwardAndBackwardMatchTheCpuBitForBit) {
  backend::CpuOps<float> cpu;
  for (const Shape s : {Shape{1, 1, 1, 1, 1}, Shape{2, 7, 4, 2, 8}, Shape{1, 33, 6, 3, 16}, Shape{2, 64, 8, 4, 32}}) {
    const std::size_t rows = static_cast<std::size_t>(s.batch) * s.seq;
    const std::size_t qn = rows * s.heads * s.hd, kvn = rows * s.kv_heads * s.hd,
                      ln = static_cast<std::size_t>(s.batch) * s.heads * s.seq;
    const std::vector<float> q = activations(qn, 161), k = activations(kvn, 162), v = activations(kvn, 163),
                             dy = activations(qn, 164), dv0 = activations(kvn, 165);
    std::vector<float> y(qn), lse(ln), dq(qn), dk(kvn), dv = dv0;
    cpu.attention_forward(y.data(), lse.data(), q.data(), k.data(), v.data(), s.batch, s.seq, s.heads, s.kv_heads, s.hd);
    cpu.attention_backward(dq.data(), dk.data(), dv.data(), dy.data(), q.data(), k.data(), v.data(), y.data(), lse.data(),
                           s.batch, s.seq, s.heads, s.kv_heads, s.hd, true);
    Device dev;
    const float *dQ = dev.upload(q), *dK = dev.upload(k), *dV = dev.upload(v), *dDy = dev.upload(dy);
    float *dY = dev.upload(std::vector<float>(qn)), *dL = dev.upload(std::vector<float>(ln)),
          *dDq = dev.upload(std::vector<float>(qn)), *dDk = dev.upload(std::vector<float>(kvn)),
          *dDv = dev.upload(dv0), *work = dev.upload(std::vector<float>(kvn));
    kernels::attention_forward(dY, dL, dQ, dK, dV, s.batch, s.seq, s.heads, s.kv_heads, s.hd, nullptr);
    kernels::attention_backward(dDq, dDk, dDv, dDy, dQ, dK, dV, dY, dL, s.batch, s.seq, s.heads, s.kv_heads, s.hd, true,
                                work, nullptr);
    const std::string at = test::shape_label("", {s.batch, s.seq, s.heads, s.kv_heads, s.hd});
    expect_same_math(y, Device::download(dY, qn), "attention_forward y" + at);
    expect_same_math(lse, Device::download(dL, ln), "attention_forward lse" + at);
    expect_same_math(dq, Device::download(dDq, qn), "attention_backward dq" + at);
    expect_same_math(dk, Device::download(dDk, kvn), "attention_backward dk" + at);
    expect_same_math(dv, Device::download(dDv, kvn), "attention_backward dv (+=)" + at);
  }
}

}  // namespace
}  // namespace pgolf
